"""Start a tensor-parallel instance: rank 0 in this process, ranks 1..N-1 as workers.

Steps, each failing the load with a message that names the rank and the cause:

1. map ranks to devices (refused when ``tensor_parallel`` exceeds the GPUs);
2. open the rendezvous store and start the workers;
3. join the process group with them once each has started;
4. load rank 0's shard while the workers load theirs (AutoTP);
5. wait until every worker reports ready.

On any failure the workers are stopped and the group is left before the error
propagates, so a failed load leaves no process behind.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from ds_triton.devices import Placement
from ds_triton.generation.model_runner import pad_token_id
from ds_triton.loading import LoadedModel, load_model
from ds_triton.spec import ModelSpec
from ds_triton.tensor_parallel.devices import rank_devices, threads_per_rank, visible_cuda_gpus
from ds_triton.tensor_parallel.distributed import RENDEZVOUS_TIMEOUT, join_group, leader_store, leave_group
from ds_triton.tensor_parallel.group import WorkerGroup
from ds_triton.tensor_parallel.runner import TensorParallelRunner

LOG = logging.getLogger(__name__)

# After the group breaks, the leader ends its own process once the requests in
# flight were answered, so ``ds-triton serve``'s supervisor loads the model again.
EXIT_AFTER_BREAK_S = 2.0


def start_tensor_parallel(
    spec: ModelSpec, version_dir: Path, *, exit_when_broken: bool = False
) -> tuple[LoadedModel, TensorParallelRunner]:
    """Load ``spec`` over ``deployment.tensor_parallel`` ranks; rank 0's model and the runner.

    Raises:
        ModelLoadError: too few GPUs, a worker that failed to start or load, or rank 0's own load.
    """
    size = spec.deployment.tensor_parallel
    gpus = visible_cuda_gpus() if spec.deployment.device == "gpu" else []
    devices = rank_devices(spec.deployment, size, gpus)
    threads = threads_per_rank(spec.deployment, size)
    store = leader_store()
    group = WorkerGroup.spawn(spec.name, version_dir, size, devices, threads, store.port)
    try:
        # Workers report 'started' just before they join: one that fails to start fails
        # the load here, instead of leaving rank 0 waiting in the rendezvous.
        group.wait_for("started", RENDEZVOUS_TIMEOUT.total_seconds())
        join_group(store, 0, size, devices[0])
        loaded = load_model(spec, version_dir, Placement(devices[0], threads))
        group.wait_for("ready", RENDEZVOUS_TIMEOUT.total_seconds())
    except BaseException:
        group.close(grace=1.0)
        leave_group()
        raise
    runner = TensorParallelRunner(
        loaded.engine, loaded.module, loaded.device, pad_token_id(loaded.tokenizer), group
    )
    if exit_when_broken:
        group.on_broken.append(_exit_soon)
    LOG.info(
        "%s: tensor parallel over %d ranks (%s), %d threads each, workers %s",
        spec.name, size, ", ".join(devices), threads, group.pids,
    )
    return loaded, runner


def _exit_soon(reason: str) -> None:
    LOG.error("ending this instance's process in %.0f s so that it is loaded again", EXIT_AFTER_BREAK_S)
    timer = threading.Timer(EXIT_AFTER_BREAK_S, os._exit, args=(1,))
    timer.daemon = True
    timer.start()
