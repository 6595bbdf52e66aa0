"""``TensorParallelRunner``: the engine's ``ModelRunner`` for a tensor-parallel instance (rank 0).

The engine calls ``prefill`` and ``decode`` exactly as on one device. Before
running each on its own shard, this runner sends the same call to every worker
(``messages.Forward``), with the KV-cache row copies made since the previous
forward, and broadcasts the call's tensors. Then all ranks run the forward
together; rank 0's logits are returned and sampled, the workers' dropped.

Any failure inside a mirrored forward, on any rank, stops the whole group: the
ranks may be left inside different collectives, which nothing can resume.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import torch

from ds_triton.generation.kv_cache import SlotKVCache, attention_layers
from ds_triton.generation.model_runner import ModelRunner
from ds_triton.generation.slots import RowCopy
from ds_triton.tensor_parallel.group import WorkerGroup
from ds_triton.tensor_parallel.messages import CACHE, Forward, TensorSlot

LOG = logging.getLogger(__name__)

CopyRecord = tuple[tuple[RowCopy, ...], tuple[int, ...]]


class MirroredSlotKVCache(SlotKVCache):
    """The leader's slot cache; each row copy is also recorded for the workers' caches."""

    record: Callable[[CopyRecord], None] | None = None

    def apply(self, copies: list[RowCopy], lengths: list[int]) -> None:
        if copies and self.record is not None:
            self.record((tuple(copies), tuple(lengths)))
        super().apply(copies, lengths)


class TensorParallelRunner(ModelRunner):
    """Runs every forward on all ranks of the group; returns rank 0's logits."""

    def __init__(self, forward: Any, module: Any, device: str, pad_token_id: int, group: WorkerGroup) -> None:
        super().__init__(forward, module, device, pad_token_id)
        self.group = group
        self._pending: list[CopyRecord] = []
        self._cache_shape = (0, 0)
        self._lock = threading.Lock()  # one mirrored call at a time; close() waits for it
        group.on_broken.append(lambda reason: abort_collectives())

    def new_cache(self, rows: int, row_tokens: int) -> SlotKVCache:
        cache = MirroredSlotKVCache(attention_layers(self.config, row_tokens), rows, row_tokens, self.device)
        cache.record = self._pending.append
        self._cache_shape = (rows, row_tokens)
        return cache

    def prefill(self, cache: SlotKVCache, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self._mirrored("prefill", cache, args, kwargs)

    def decode(self, cache: SlotKVCache, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self._mirrored("decode", cache, args, kwargs)

    def close(self) -> None:
        """Stop the workers (after a forward in flight, if any, for at most its grace)."""
        acquired = self._lock.acquire(timeout=30)
        try:
            self.group.close()
        finally:
            if acquired:
                self._lock.release()

    @torch.inference_mode()
    def _mirrored(
        self, method: str, cache: SlotKVCache, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        with self._lock:
            self.group.raise_if_broken()
            tensors: list[torch.Tensor] = []
            message = Forward(
                method,
                (CACHE, *(_placeholder(a, tensors) for a in args)),
                {k: _placeholder(v, tensors) for k, v in kwargs.items()},
                self._cache_shape,
                tuple(self._pending),
                len(tensors),
            )
            self._pending.clear()
            try:
                self.group.send_all(message)
                for tensor in tensors:
                    torch.distributed.broadcast(tensor, src=0)
                return getattr(ModelRunner, method)(self, cache, *args, **kwargs)
            except Exception as exc:
                # Usually a worker failed first and rank 0 only saw its peer vanish: name the worker.
                own = f"rank 0's {method} failed: {type(exc).__name__}: {exc}"
                raise self.group.break_with(self.group.cause_of_failure(own)) from exc


def _placeholder(value: Any, tensors: list[torch.Tensor]) -> Any:
    """``value`` as it travels: tensors become slots (their values are broadcast), the cache a marker."""
    if isinstance(value, torch.Tensor):
        tensors.append(value.contiguous())
        return TensorSlot(len(tensors) - 1, tuple(value.shape), value.dtype)
    return value


def abort_collectives() -> None:
    """Make a collective blocked on a dead peer return (NCCL waits otherwise; gloo sees the closed socket)."""
    try:
        import torch.distributed as dist

        if not dist.is_initialized() or dist.get_backend() != "nccl":
            return
        abort = getattr(dist.distributed_c10d, "_abort_process_group", None)
        if abort is not None:
            abort()
    except Exception:
        LOG.exception("could not abort the tensor-parallel process group")
