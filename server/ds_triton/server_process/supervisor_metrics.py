"""The supervisor's counters in Prometheus text format, on a port of ``ds-triton serve``.

Triton's metrics endpoint only carries what runs inside tritonserver, so stub
crashes and reloads (which Triton does not see) are published here:

* ``ds_triton_supervisor_stub_crashes_total{model}``: crashes of a model's stubs;
* ``ds_triton_supervisor_reloads_total{model,result="success"|"failure"}``;
* ``ds_triton_supervisor_model_down{model}``: 1 once the supervisor gave up on it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ds_triton.server_process.supervisor import Health, ModelRecord


def render_metrics(records: Mapping[str, ModelRecord]) -> str:
    lines = [
        "# HELP ds_triton_supervisor_stub_crashes_total Python stub crashes seen by the supervisor.",
        "# TYPE ds_triton_supervisor_stub_crashes_total counter",
    ]
    lines += [f'ds_triton_supervisor_stub_crashes_total{{model="{m}"}} {r.crashes_total}'
              for m, r in sorted(records.items())]
    lines += [
        "# HELP ds_triton_supervisor_reloads_total Reloads after a crash, by result.",
        "# TYPE ds_triton_supervisor_reloads_total counter",
    ]
    for model, record in sorted(records.items()):
        for result, count in (("success", record.reloads_ok), ("failure", record.reloads_failed)):
            lines.append(f'ds_triton_supervisor_reloads_total{{model="{model}",result="{result}"}} {count}')
    lines += [
        "# HELP ds_triton_supervisor_model_down 1 when the supervisor gave up on the model.",
        "# TYPE ds_triton_supervisor_model_down gauge",
    ]
    lines += [f'ds_triton_supervisor_model_down{{model="{m}"}} {int(r.health is Health.DOWN)}'
              for m, r in sorted(records.items())]
    return "\n".join(lines) + "\n"


class MetricsServer:
    """``GET /metrics`` on ``host:port`` in a daemon thread."""

    def __init__(self, host: str, port: int, records: Callable[[], Mapping[str, ModelRecord]]) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404)
                    return
                body = render_metrics(records()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: object) -> None:
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="ds-triton-supervisor-metrics", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
