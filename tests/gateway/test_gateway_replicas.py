"""The gateway as ``ds-triton serve --gateway-port`` runs it, on a replica with one sequence slot.

Replica B is ``ds-triton serve`` over a copy of the repository whose generation
model runs one sequence and queues one more, and whose tokenizer carries a chat
template; its gateway (serve's child) asks for an API key. With B the tests
show the chat template applied, 503 when the model is full, 401 without the
key, a closed stream freeing its Triton slot (timed from the generation
metrics, published every 10 ms here), and, with the session's replica A
beside it, failover when B's tritonserver is killed under load.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest

from ds_triton.server_process.procfs import children_of, read_argv
from ds_triton.server_process.tritonserver import TritonServer, free_ports
from ds_triton_gateway.settings import GatewaySettings
from tests.conftest import MODEL_REPOSITORY
from tests.gateway.conftest import Gateway, gateway_in_process
from tests.serve_process import ServeProcess, serving

pytestmark = [pytest.mark.server, pytest.mark.slow]

EMBED = "text_embedding"
GENERATE = "text_generation"
API_KEY = "gateway-test-key-0123456789"
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
PUBLISH_S = 0.01  # the generation metrics' publishing interval on replica B
HOLD = {"ignore_eos": True}  # with max_tokens=1000: a stream that holds the slot for seconds


@dataclass
class ReplicaB:
    serve: ServeProcess
    gateway: Gateway
    repository: Path

    def sdk(self, api_key: str = API_KEY) -> openai.OpenAI:
        return self.gateway.openai(api_key)

    def generation_metric(self, name: str, **labels: str) -> float:
        url = f"http://127.0.0.1:{self.serve.ports.metrics}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        for line in text.splitlines():
            head, _, value = line.rpartition(" ")
            if head.startswith(name + "{") and all(f'{k}="{v}"' in head for k, v in labels.items()):
                return float(value)
        return 0.0

    def running(self) -> float:
        return self.generation_metric("ds_triton_generation_sequences", model=GENERATE, state="running")

    def gateway_pid(self) -> int | None:
        for stat in children_of(self.serve.process.pid):
            if "ds_triton_gateway" in read_argv(stat.pid):
                return stat.pid
        return None


def _copy_repository(target: Path) -> None:
    shutil.copytree(MODEL_REPOSITORY / EMBED, target / EMBED, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(
        MODEL_REPOSITORY / GENERATE, target / GENERATE, ignore=shutil.ignore_patterns("__pycache__")
    )
    spec_path = target / GENERATE / "1" / "model.json"
    spec = json.loads(spec_path.read_text())
    spec["generation"].update(max_concurrent_sequences=1, max_queued_requests=1, max_prompt_tokens=64,
                              max_tokens_limit=1000)  # fmt: skip
    spec_path.write_text(json.dumps(spec, indent=2))
    tokenizer_config = target / GENERATE / "1" / "checkpoint" / "tokenizer_config.json"
    config = json.loads(tokenizer_config.read_text())
    config["chat_template"] = CHAT_TEMPLATE
    tokenizer_config.write_text(json.dumps(config, indent=2))


@pytest.fixture(scope="module")
def replica_b(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReplicaB]:
    repository = tmp_path_factory.mktemp("gateway-repo")
    _copy_repository(repository)
    (port,) = free_ports(1)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("DS_TRITON_METRICS_PUBLISH_S", str(PUBLISH_S))
        env.setenv("DS_TRITON_GATEWAY_API_KEYS", API_KEY)  # serve's gateway inherits it
        work = tmp_path_factory.mktemp("replica-b")
        with serving(repository, work, banner_timeout=600, extra_args=["--gateway-port", str(port)]) as serve:
            replica = ReplicaB(serve, Gateway(f"http://127.0.0.1:{port}"), repository)
            pid = replica.gateway_pid()
            try:
                replica.gateway.wait_healthy()
                yield replica
            finally:
                if serve.process.poll() is None:  # a drain stops the gateway first
                    serve.process.send_signal(signal.SIGTERM)
                    serve.process.wait(timeout=90)
                if pid is not None and _alive(pid):
                    os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _wait(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f}s")
        time.sleep(0.01)


def _hold_the_slot(sdk: openai.OpenAI) -> Any:
    """A stream that holds the model's one sequence slot until it is closed."""
    stream = sdk.completions.create(
        model=GENERATE, prompt="Tell me everything", stream=True, max_tokens=1000, extra_body=HOLD
    )
    next(iter(stream))
    return stream


def test_serve_runs_the_gateway_and_names_it_in_its_banner(replica_b: ReplicaB) -> None:
    port = replica_b.gateway.url.rsplit(":", 1)[1]
    assert f"OpenAI   http://localhost:{port}/v1" in replica_b.serve.output
    assert {m.id for m in replica_b.sdk().models.list()} == {EMBED, GENERATE}


def test_the_api_key_is_required_and_compared(replica_b: ReplicaB) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        replica_b.sdk("wrong-key-0123456789").models.list()
    assert caught.value.status_code == 401
    assert caught.value.body["code"] == "invalid_api_key"  # type: ignore[index]
    status, text = replica_b.gateway.get("/v1/models")  # no Authorization header at all
    assert status == 401 and json.loads(text)["error"]["code"] == "invalid_api_key"
    assert replica_b.gateway.get("/v1/models", {"Authorization": f"Bearer {API_KEY}"})[0] == 200
    assert replica_b.gateway.get("/health")[0] == 200  # probes and scrapers need no key
    assert replica_b.gateway.get("/metrics")[0] == 200


def test_chat_uses_the_checkpoint_chat_template(replica_b: ReplicaB, hf_reference: Any) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(replica_b.repository / GENERATE / "1" / "checkpoint"))
    messages: Any = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert prompt == "<|system|> Be brief.\n<|user|> Hi\n<|assistant|>"
    expected, tokens = hf_reference(prompt, 8)
    answer = replica_b.sdk().chat.completions.create(model=GENERATE, messages=messages, max_tokens=8,
                                                     temperature=0)  # fmt: skip
    assert answer.choices[0].message.content == expected
    assert answer.usage is not None
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (
        len(tokenizer(prompt)["input_ids"]), tokens,
    )  # fmt: skip


def test_a_full_model_answers_503(replica_b: ReplicaB) -> None:
    sdk = replica_b.sdk()
    holder = _hold_the_slot(sdk)
    queued: list[Any] = []
    waiter = threading.Thread(
        target=lambda: queued.append(sdk.completions.create(model=GENERATE, prompt="next", max_tokens=2))
    )
    try:
        waiter.start()
        _wait(lambda: replica_b.generation_metric("ds_triton_generation_sequences", state="waiting") == 1,
              30, "the second request queued")  # fmt: skip
        with pytest.raises(openai.InternalServerError) as caught:
            sdk.completions.create(model=GENERATE, prompt="one too many", max_tokens=2)
        assert caught.value.status_code == 503
        assert caught.value.body["code"] == "overloaded"  # type: ignore[index]
        assert caught.value.response.headers["retry-after"] == "1"
    finally:
        holder.close()
        waiter.join(timeout=60)
    assert queued and queued[0].choices[0].finish_reason in ("length", "stop")  # the queued one ran


def test_closing_a_stream_frees_the_triton_slot(replica_b: ReplicaB) -> None:
    """Freed within 100 ms plus one step (plus the metrics' publishing interval and one read)."""
    sdk = replica_b.sdk()
    rounds: list[tuple[float, float, float]] = []  # (seconds to free, longest step, longest metrics read)
    for _ in range(3):
        cancelled = replica_b.generation_metric("ds_triton_generation_sequences_finished_total",
                                                reason="cancelled")  # fmt: skip
        stream = sdk.completions.create(
            model=GENERATE, prompt="Tell me everything", stream=True, max_tokens=1000, extra_body=HOLD
        )
        arrivals = []
        for _chunk in stream:
            arrivals.append(time.perf_counter())
            if len(arrivals) == 20:
                break
        assert replica_b.running() == 1
        closed = time.perf_counter()
        stream.close()
        longest_read = 0.0
        while True:
            started = time.perf_counter()
            running = replica_b.running()
            longest_read = max(longest_read, time.perf_counter() - started)
            if running == 0:
                break
            assert time.perf_counter() - closed < 10, "the slot was not freed"
        freed = time.perf_counter() - closed
        step = max(b - a for a, b in itertools.pairwise(arrivals[1:]))
        rounds.append((freed, step, longest_read))
        _wait(
            lambda c=cancelled: (
                replica_b.generation_metric(
                    "ds_triton_generation_sequences_finished_total", reason="cancelled"
                )
                == c + 1
            ),
            10,
            "cancelled",
        )
    print("closed stream -> slot freed (s, step s, metrics read s):", rounds)
    freed, step, read = sorted(rounds)[1]  # the median round
    assert freed <= 0.1 + step + PUBLISH_S + read, rounds


def test_failover_two_replicas_one_killed_under_load(
    replica_b: ReplicaB, triton_server: TritonServer
) -> None:
    urls = f"grpc://{triton_server.grpc_url},grpc://127.0.0.1:{replica_b.serve.ports.grpc}"
    settings = GatewaySettings(urls=urls, model_repository=MODEL_REPOSITORY)
    before_b = _embedding_count(replica_b.serve.ports.http)
    outcomes: list[str] = []
    stop = threading.Event()
    with gateway_in_process(settings) as gateway:

        def load(worker: int) -> None:
            sdk = gateway.openai(timeout=60)
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    sdk.embeddings.create(model=EMBED, input=[f"worker {worker} request {i}", "failover"])
                    outcomes.append("ok")
                except openai.APIError as exc:
                    outcomes.append(f"{type(exc).__name__}: {exc}")

        workers = [threading.Thread(target=load, args=(w,)) for w in range(4)]
        for worker in workers:
            worker.start()
        try:
            _wait(lambda: len(outcomes) >= 100, 120, "100 requests before the kill")
            served_by_b = _embedding_count(replica_b.serve.ports.http) - before_b
            gateway_pid = replica_b.gateway_pid()
            os.kill(replica_b.serve.tritonserver_pid(), signal.SIGKILL)
            killed_at = len(outcomes)
            _wait(lambda: len(outcomes) >= killed_at + 300, 180, "300 requests after the kill")
        finally:
            stop.set()
            for worker in workers:
                worker.join(timeout=120)
    failures = [o for o in outcomes if o != "ok"]
    print(f"failover: {len(failures)} of {len(outcomes)} failed; B served {served_by_b} before the kill",
          failures[:3])  # fmt: skip
    assert served_by_b > 0, "the gateway never used replica B"
    assert len(failures) <= 0.01 * len(outcomes), failures[:5]
    # serve saw its tritonserver die: it exits non-zero and takes its gateway with it.
    assert replica_b.serve.process.wait(timeout=60) != 0
    assert gateway_pid is not None and not _alive(gateway_pid)


def _embedding_count(http_port: int) -> int:
    url = f"http://127.0.0.1:{http_port}/v2/models/{EMBED}/stats"
    with urllib.request.urlopen(url, timeout=10) as response:
        stats = json.loads(response.read())
    return sum(int(s["inference_count"]) for s in stats["model_stats"])
