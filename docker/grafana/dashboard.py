"""Build the Grafana dashboard for ds-triton replicas (``grafana-foundation-sdk``).

    .venv/bin/python docker/grafana/dashboard.py          # rewrite dashboards/ds-triton.json
    .venv/bin/python docker/grafana/dashboard.py --check  # exit 1 if the JSON is stale

Where each number comes from (Triton 2.51 and this project's models):

* throughput, failures, queue and compute time, batch size: Triton's per-model
  counters (``nv_inference_*``), on by default;
* request and queue-time p50/p99: Triton's *summaries*, which need
  ``tritonserver --metrics-config=summary_latencies=true`` (``ds-triton serve``
  passes it). Triton 2.51 has no latency histograms; releases from 24.11 add one,
  ``nv_inference_first_response_histogram_ms`` (``histogram_latencies=true``),
  with 100/500/2000/5000 ms buckets, too coarse for these models. A summary's
  quantiles are per replica, so they are drawn per replica, never averaged;
* tokens/s, time to first token, decode batch: the generation model's own
  metrics (``ds_triton_generation_*``, README "Metrics"); TTFT is a histogram, so
  its quantiles are aggregated across replicas correctly;
* GPU utilisation and memory: ``nv_gpu_*``, present only where Triton sees GPUs;
* stub crashes and models given up: the supervisor of ``ds-triton serve``
  (``--supervisor-metrics-port``, job ``ds-triton-supervisor``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from grafana_foundation_sdk.builders.dashboard import (
    Dashboard,
    DatasourceVariable,
    QueryVariable,
    Row,
)
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.builders.stat import Panel as Stat
from grafana_foundation_sdk.builders.timeseries import Panel as Timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import Dashboard as DashboardModel
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DataSourceRef,
    VariableRefresh,
    VariableSort,
)

OUTPUT = Path(__file__).resolve().parent / "dashboards" / "ds-triton.json"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
# Every Triton series on the dashboard is filtered by these two variables.
SELECT = 'model=~"$model", instance=~"$instance"'
WINDOW = "$__rate_interval"


def query(expr: str, legend: str) -> Dataquery:
    return Dataquery().expr(expr).legend_format(legend).datasource(DATASOURCE)


def rate(metric: str, by: str = "model", extra: str = "") -> str:
    return f"sum by ({by}) (rate({metric}{{{SELECT}{extra}}}[{WINDOW}]))"


def per_request_ms(duration_counter: str) -> str:
    """Mean microseconds per successful request of a cumulative duration counter, in ms."""
    return f"{rate(duration_counter)} / {rate('nv_inference_request_success')} / 1e3"


def timeseries(title: str, unit: str, description: str, *targets: Dataquery) -> Timeseries:
    panel = Timeseries().title(title).unit(unit).description(description).datasource(DATASOURCE)
    panel = panel.height(8).span(12).min(0)
    for target in targets:
        panel = panel.with_target(target)
    return panel


def stat(title: str, description: str, *targets: Dataquery) -> Stat:
    panel = Stat().title(title).description(description).datasource(DATASOURCE).height(4).span(6)
    for target in targets:
        panel = panel.with_target(target)
    return panel


def variables(dashboard: Dashboard) -> Dashboard:
    return (
        dashboard.with_variable(DatasourceVariable("datasource").label("Prometheus").type("prometheus"))
        .with_variable(
            QueryVariable("model").label("Model").datasource(DATASOURCE)
            .query("label_values(nv_inference_count, model)")
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED).sort(VariableSort.ALPHABETICAL_ASC)
            .multi(True).include_all(True).all_value(".*")
        )
        .with_variable(
            QueryVariable("instance").label("Replica").datasource(DATASOURCE)
            .query('label_values(up{job="triton"}, instance)')
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED).sort(VariableSort.ALPHABETICAL_ASC)
            .multi(True).include_all(True).all_value(".*")
        )
    )  # fmt: skip


def overview(dashboard: Dashboard) -> Dashboard:
    return (
        dashboard.with_row(Row("Overview"))
        .with_panel(stat(
            "Replicas up", "Replicas whose metrics endpoint answers Prometheus.",
            query('sum(up{job="triton", instance=~"$instance"})', "replicas"),
        ))
        .with_panel(stat(
            "Replicas serving each model",
            "Replicas where the model is loaded (Triton reports its counters). A model whose "
            "stub died is unloaded by the supervisor of ds-triton serve until it is reloaded.",
            query(f"count by (model) (nv_inference_count{{{SELECT}}})", "{{model}}"),
        ))
        .with_panel(stat(
            "Stub crashes (1h) / models given up",
            "Python stubs that died (crash, SIGKILL, OOM kill), and models the supervisor "
            "stopped reloading after too many crashes.",
            query("sum by (model) (increase(ds_triton_supervisor_stub_crashes_total"
                  '{model=~"$model"}[1h]))', "{{model}} crashes"),
            query('sum by (model) (ds_triton_supervisor_model_down{model=~"$model"})',
                  "{{model}} given up"),
        ))
        .with_panel(stat(
            "Requests waiting", "Requests accepted by Triton and not yet executing, all replicas.",
            query(f"sum(nv_inference_pending_request_count{{{SELECT}}})", "pending"),
        ))
    )  # fmt: skip


def traffic(dashboard: Dashboard) -> Dashboard:
    return (
        dashboard.with_row(Row("Traffic"))
        .with_panel(timeseries(
            "Throughput", "reqps", "Successful inference requests per second, all replicas.",
            query(rate("nv_inference_request_success"), "{{model}}"),
        ))
        .with_panel(timeseries(
            "Failed requests", "reqps",
            "Failed requests per second by reason (REJECTED: queue full or timed out; "
            "CANCELED; BACKEND: failed in the model). A model's own per-request INVALID_ARG "
            "answer counts as a success in Triton 2.51's statistics.",
            query(rate("nv_inference_request_failure", by="model, reason"), "{{model}} {{reason}}"),
        ))
    )  # fmt: skip


def latency(dashboard: Dashboard) -> Dashboard:
    def quantile(metric: str, q: str, name: str) -> Dataquery:
        expr = f'{metric}{{{SELECT}, quantile="{q}"}} / 1e3'
        return query(expr, f"{{{{model}}}} {name} {{{{instance}}}}")

    return (
        dashboard.with_row(Row("Latency"))
        .with_panel(timeseries(
            "Request latency p50 / p99 per replica", "ms",
            "Triton's request summary (arrival to response, inside the server) over its "
            "sliding window, per replica. For the decoupled generation model Triton counts a "
            "request as done when execute() returns: use time to first token instead.",
            quantile("nv_inference_request_summary_us", "0.5", "p50"),
            quantile("nv_inference_request_summary_us", "0.99", "p99"),
        ))
        .with_panel(timeseries(
            "Queue vs compute time per request", "ms",
            "Mean time a request waited in Triton's queue, and the mean time of the forward "
            "(input + infer + output) it was part of. Queue time growing at steady compute "
            "time means the replicas are saturated.",
            query(per_request_ms("nv_inference_queue_duration_us"), "{{model}} queue"),
            query(
                f"({rate('nv_inference_compute_input_duration_us')} "
                f"+ {rate('nv_inference_compute_infer_duration_us')} "
                f"+ {rate('nv_inference_compute_output_duration_us')}) "
                f"/ {rate('nv_inference_request_success')} / 1e3",
                "{{model}} compute",
            ),
        ))
        .with_panel(timeseries(
            "Queue time p99 per replica", "ms", "Triton's queue summary, per replica.",
            quantile("nv_inference_queue_summary_us", "0.99", "p99"),
        ))
        .with_panel(timeseries(
            "Requests waiting per replica", "short", "Triton's pending request count per model.",
            query(f"nv_inference_pending_request_count{{{SELECT}}}", "{{model}} {{instance}}"),
        ))
    )  # fmt: skip


def batching(dashboard: Dashboard) -> Dashboard:
    occupancy = "ds_triton_generation_batch_occupancy"
    return (
        dashboard.with_row(Row("Batching"))
        .with_panel(timeseries(
            "Achieved batch size", "short",
            "Inferences per model execution (Triton's dynamic batcher); about 1 means "
            "requests are not being batched.",
            query(f"{rate('nv_inference_count')} / {rate('nv_inference_exec_count')}", "{{model}}"),
        ))
        .with_panel(timeseries(
            "Generation: sequences per decode pass", "short",
            "Mean streams advanced by one decode forward pass (in-flight batching).",
            query(f"{rate(occupancy + '_sum')} / {rate(occupancy + '_count')}", "{{model}}"),
        ))
    )  # fmt: skip


def generation(dashboard: Dashboard) -> Dashboard:
    ttft = "ds_triton_generation_time_to_first_token_seconds_bucket"

    def ttft_quantile(q: str, name: str) -> Dataquery:
        return query(f"histogram_quantile({q}, {rate(ttft, by='le, model')})", f"{{{{model}}}} {name}")

    return (
        dashboard.with_row(Row("Generation"))
        .with_panel(timeseries(
            "Tokens per second", "short", "Tokens generated per second, all streams, all replicas.",
            query(rate("ds_triton_generation_tokens_total"), "{{model}}"),
        ))
        .with_panel(timeseries(
            "Time to first token p50 / p99", "s",
            "From a request's arrival in the model to its first token, all replicas.",
            ttft_quantile("0.5", "p50"), ttft_quantile("0.99", "p99"),
        ))
        .with_panel(timeseries(
            "Sequences", "short", "Streams decoding (running), queued (waiting), and the rows.",
            query(f"sum by (model, state) (ds_triton_generation_sequences{{{SELECT}}})",
                  "{{model}} {{state}}"),
        ))
        .with_panel(timeseries(
            "KV cache tokens", "short",
            "KV-cache tokens reserved by admitted streams, and the token budget: a full budget "
            "makes new streams wait.",
            query(f"sum by (model, state) (ds_triton_generation_kv_tokens{{{SELECT}}})",
                  "{{model}} {{state}}"),
        ))
        .with_panel(timeseries(
            "Finished sequences", "short", "Streams finished per second, by reason.",
            query(rate("ds_triton_generation_sequences_finished_total", by="model, reason"),
                  "{{model}} {{reason}}"),
        ))
    )  # fmt: skip


def hardware(dashboard: Dashboard) -> Dashboard:
    replica = 'instance=~"$instance"'
    return (
        dashboard.with_row(Row("Hardware"))
        .with_panel(timeseries(
            "GPU utilisation", "percentunit", "Per GPU; empty on replicas without GPUs.",
            query(f"nv_gpu_utilization{{{replica}}}", "{{instance}} {{gpu_uuid}}"),
        ))
        .with_panel(timeseries(
            "GPU memory used", "bytes", "Per GPU; empty on replicas without GPUs.",
            query(f"nv_gpu_memory_used_bytes{{{replica}}}", "{{instance}} {{gpu_uuid}}"),
        ))
        .with_panel(timeseries(
            "CPU utilisation", "percentunit", "Host CPU as Triton reports it, per replica.",
            query(f"nv_cpu_utilization{{{replica}}}", "{{instance}}"),
        ))
    )  # fmt: skip


def build() -> Dashboard:
    dashboard = (
        Dashboard("ds-triton: DeepSpeed models on Triton")
        .uid("ds-triton")
        .tags(["ds-triton", "triton", "deepspeed"])
        .description("Throughput, latency, batching and generation of the ds-triton replicas.")
        .refresh("30s")
        .time("now-1h", "now")
        .tooltip(DashboardCursorSync.CROSSHAIR)
    )
    for section in (variables, overview, traffic, latency, batching, generation, hardware):
        dashboard = section(dashboard)
    return dashboard


def numbered(model: DashboardModel) -> DashboardModel:
    """Give every panel an id and every query a refId (A, B, ...), as Grafana's editor does."""
    for number, panel in enumerate(model.panels or [], start=1):
        panel.id_val = number
        for index, target in enumerate(getattr(panel, "targets", None) or []):
            target.ref_id = chr(ord("A") + index)
    return model


def render() -> str:
    return JSONEncoder(sort_keys=True, indent=2).encode(numbered(build().build())) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="exit 1 if the checked-in JSON differs")
    args = parser.parse_args()
    text = render()
    if args.check:
        if not OUTPUT.is_file() or OUTPUT.read_text() != text:
            print(f"{OUTPUT} is stale: run python docker/grafana/dashboard.py", file=sys.stderr)
            return 1
        return 0
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
