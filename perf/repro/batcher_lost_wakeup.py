"""Minimal reproduction: Triton's dynamic batcher sleeps 500 ms when its only instance frees up.

Triton 2.51 (and core ``main`` as of 2026-11): a model with a dynamic batcher
and a ``default_queue_policy`` (any ``max_queue_size``, default timeout or
timeout override, i.e. what load shedding needs) turns payload prefetching off,
so the batcher thread waits until an instance thread is *waiting* for work
(``RateLimiter::PayloadSlotAvailable`` counts waiting consumers). Nothing wakes
it when that becomes true:

* ``DynamicBatchScheduler::Enqueue`` only notifies the batcher if a slot is
  available, so a request that arrives while the instance is busy notifies no one;
* the payload's completion callback notifies the batcher from inside
  ``Payload::Execute``, *before* the instance thread returns to
  ``RateLimiter::DequeuePayload`` and increments the waiting-consumer count, so the
  batcher re-checks, sees no consumer, and goes back to sleep;
* ``IncrementConsumerCount`` notifies nothing; ``WaitForPayloadSlotAvailable``
  then sleeps its full ``default_wait_microseconds`` (500 ms, hard-coded).

So with ONE instance, a request that arrives while that instance is busy waits
~500 ms instead of the rest of the running execution, unless yet another
request arrives and wakes the batcher. Without a queue policy, prefetching is
on and the same request runs right after the busy one. With two instances the
other instance's completion wakes the batcher, so a stall lasts at most one
execution.

This script needs nothing but a trivial Python model (it sleeps the number of
milliseconds it is sent). Per trial: client A sends a 100 ms request; 30 ms later
client B sends a 1 ms request. B should take about 70 + 1 ms.

    .venv/bin/python perf/repro/batcher_lost_wakeup.py --trials 20

prints B's latency per trial for the same model with and without a queue policy,
and with a policy but two instances.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import tritonclient.http as httpclient

from ds_triton.server_process.tritonserver import Ports, ServerOptions, running_server

MODEL_PY = '''
import time
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        inputs = [pb_utils.get_input_tensor_by_name(r, "ms").as_numpy() for r in requests]
        time.sleep(max(float(x.max()) for x in inputs) / 1000)
        return [pb_utils.InferenceResponse([pb_utils.Tensor("out", x)]) for x in inputs]
'''

CONFIG = """
name: "{name}"
backend: "python"
max_batch_size: 8
input {{ name: "ms" data_type: TYPE_FP32 dims: [1] }}
output {{ name: "out" data_type: TYPE_FP32 dims: [1] }}
instance_group {{ count: {instances} kind: KIND_CPU }}
dynamic_batching {{ {policy} }}
"""

# name: (instances, dynamic_batching body)
VARIANTS = {
    "queue_policy_1_instance": (1, "default_queue_policy { max_queue_size: 8 }"),
    "no_queue_policy_1_instance": (1, ""),
    "queue_policy_2_instances": (2, "default_queue_policy { max_queue_size: 8 }"),
}

BUSY_MS = 100.0
ARRIVAL_MS = 30.0
SHORT_MS = 1.0


def write_repository(root: Path) -> Path:
    for name, (instances, policy) in VARIANTS.items():
        (root / name / "1").mkdir(parents=True)
        (root / name / "1" / "model.py").write_text(MODEL_PY)
        config = CONFIG.format(name=name, instances=instances, policy=policy)
        (root / name / "config.pbtxt").write_text(config)
    return root


def infer_ms(url: str, model: str, ms: float) -> float:
    """Send one request that executes ``ms`` milliseconds; return its latency in ms."""
    client = httpclient.InferenceServerClient(url)
    try:
        tensor = httpclient.InferInput("ms", [1, 1], "FP32")
        tensor.set_data_from_numpy(np.array([[ms]], dtype=np.float32))
        start = time.perf_counter()
        client.infer(model, [tensor])
        return (time.perf_counter() - start) * 1000
    finally:
        client.close()


def trial(url: str, model: str) -> float:
    """B's latency when it arrives while A's request occupies the instance."""
    busy = threading.Thread(target=infer_ms, args=(url, model, BUSY_MS))
    busy.start()
    time.sleep(ARRIVAL_MS / 1000)
    latency = infer_ms(url, model, SHORT_MS)
    busy.join()
    return latency


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lost-wakeup-") as tmp:
        repository = write_repository(Path(tmp) / "models")
        options = ServerOptions(
            model_repository=repository, ports=Ports.free(), run_dir=Path(tmp) / "run", model_control="none"
        )
        with running_server(options, log_path=Path(tmp) / "server.log", models=list(VARIANTS)) as server:
            expected = BUSY_MS - ARRIVAL_MS + SHORT_MS
            print(f"B arrives {ARRIVAL_MS:.0f} ms into A's {BUSY_MS:.0f} ms execution: ~{expected:.0f} ms")
            for model in VARIANTS:
                infer_ms(server.http_url, model, SHORT_MS)  # warm up
                latencies = [trial(server.http_url, model) for _ in range(args.trials)]
                stalled = sum(latency > expected + 200 for latency in latencies)
                print(
                    f"{model:28s} B median {statistics.median(latencies):6.0f} ms, "
                    f"max {max(latencies):4.0f} ms, "
                    f"stalled > {expected + 200:.0f} ms in {stalled}/{len(latencies)}"
                )


if __name__ == "__main__":
    main()
