"""A tensor-parallel worker (rank >= 1): load a shard, then run the leader's forwards until told to stop.

Started by the leader (``group.WorkerGroup.spawn``) as
``python -m ds_triton.tensor_parallel.worker``. Its stdin carries commands and
its stdout statuses (``messages``); anything else printed goes to stderr, the
server log. It exits when the leader says stop, when its command pipe closes
(the leader died: no orphan), and after any error, which it reports first.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

LOG = logging.getLogger("ds_triton.tensor_parallel.worker")

LEADER_POLL_S = 0.5


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    # Keep the two pipes for messages; stray prints (DeepSpeed prints to stdout) go to the log.
    commands = os.dup(0)
    status = os.dup(1)
    os.dup2(2, 1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s %(levelname)s tp-rank{args.rank} %(name)s: %(message)s"
    )
    from ds_triton.tensor_parallel import channel
    from ds_triton.tensor_parallel.messages import WorkerStatus

    _exit_with_leader()
    try:
        runner, device = _start(args, status)
        channel.send(status, WorkerStatus(args.rank, "ready"))
        _serve(runner, device, commands)
    except channel.ChannelClosed:
        LOG.info("the leader is gone; exiting")
        return 0
    except BaseException as exc:  # report every failure, then end: the group cannot go on
        detail = f"{type(exc).__name__}: {exc}"
        LOG.error("failed: %s\n%s", detail, traceback.format_exc())
        with contextlib.suppress(Exception):
            channel.send(status, WorkerStatus(args.rank, "failed", detail))
        return 1
    LOG.info("stopped")
    return 0


def _exit_with_leader() -> None:
    """End this process as soon as the leader is gone, even inside a collective.

    A closed command pipe ends the loop while it waits for a command; this
    thread covers a worker blocked in an NCCL collective, which would otherwise
    wait for the collective timeout.
    """
    leader = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(LEADER_POLL_S)
            if os.getppid() != leader:
                LOG.error("the leader (pid %d) is gone; exiting", leader)
                os._exit(1)

    threading.Thread(target=watch, name="leader-watch", daemon=True).start()


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--version-dir", type=Path, required=True)
    parser.add_argument("--rank", type=int, required=True)
    parser.add_argument("--world-size", type=int, required=True)
    parser.add_argument("--device", required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--store-port", type=int, required=True)
    return parser.parse_args(argv)


def _start(args: argparse.Namespace, status: int) -> tuple[Any, str]:
    from ds_triton.devices import Placement
    from ds_triton.generation.model_runner import ModelRunner, pad_token_id
    from ds_triton.loading import load_model
    from ds_triton.spec import ModelSpec
    from ds_triton.tensor_parallel import channel
    from ds_triton.tensor_parallel.distributed import disable_shm_allreduce, join_group, worker_store
    from ds_triton.tensor_parallel.messages import WorkerStatus

    spec = ModelSpec.load(args.version_dir)
    import transformers  # noqa: F401  # the slow imports before 'started' (see leader.py)

    disable_shm_allreduce()  # imports DeepSpeed
    store = worker_store(args.store_port)
    channel.send(status, WorkerStatus(args.rank, "started"))
    join_group(store, args.rank, args.world_size, args.device)
    loaded = load_model(spec, args.version_dir, Placement(args.device, args.threads))
    runner = ModelRunner(loaded.engine, loaded.module, loaded.device, pad_token_id(loaded.tokenizer))
    LOG.info("loaded its shard of %s on %s", spec.name, args.device)
    return runner, args.device


def _serve(runner: Any, device: str, commands: int) -> None:
    import torch

    # Like the leader's engine thread: the cache is made and changed in inference mode only.
    with torch.inference_mode():
        _serve_commands(runner, device, commands)


def _serve_commands(runner: Any, device: str, commands: int) -> None:
    from ds_triton.generation.kv_cache import SlotKVCache
    from ds_triton.tensor_parallel import channel
    from ds_triton.tensor_parallel.messages import Forward, Stop

    cache: SlotKVCache | None = None
    while True:
        message = channel.receive(commands)
        if isinstance(message, Stop):
            return
        if not isinstance(message, Forward):
            raise TypeError(f"unexpected command {message!r}")
        if cache is None or (cache.rows, cache.row_tokens) != message.cache_shape:
            cache = runner.new_cache(*message.cache_shape)
        for copies, lengths in message.copies:
            cache.apply(list(copies), list(lengths))
        received = _receive_tensors(message, device)
        args = [_resolve(a, received, cache) for a in message.args]
        kwargs = {k: _resolve(v, received, cache) for k, v in message.kwargs.items()}
        getattr(runner, message.method)(*args, **kwargs)


def _receive_tensors(message: Any, device: str) -> list[Any]:
    """The forward's tensors, broadcast by rank 0 in slot order."""
    import torch

    from ds_triton.tensor_parallel.messages import TensorSlot

    received: list[Any] = [None] * message.tensors
    slots = [v for v in (*message.args, *message.kwargs.values()) if isinstance(v, TensorSlot)]
    for slot in sorted(slots, key=lambda s: s.index):
        tensor = torch.empty(slot.shape, dtype=slot.dtype, device=device)
        torch.distributed.broadcast(tensor, src=0)
        received[slot.index] = tensor
    return received


def _resolve(value: Any, received: list[Any], cache: Any) -> Any:
    """An argument as this rank passes it: its own tensors and its own cache."""
    from ds_triton.tensor_parallel.messages import CACHE, TensorSlot

    if isinstance(value, TensorSlot):
        return received[value.index]
    return cache if isinstance(value, str) and value == CACHE else value

if __name__ == "__main__":
    code = main()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    # No interpreter teardown: the process group's destructors may wait for peers
    # that are gone or stopping too. Nothing is left to clean up but the process.
    os._exit(code)
