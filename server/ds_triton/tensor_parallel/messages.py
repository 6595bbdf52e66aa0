"""What the leader sends each worker: one message per forward pass, and the stop.

A forward's arguments travel as they are, except two kinds of value:

- the leader's KV cache becomes ``CACHE``: each rank runs on its own cache, of
  the geometry in ``Forward.cache_shape``;
- a tensor becomes a ``TensorSlot``: its shape and dtype travel here and its
  values follow through the process group (a broadcast from rank 0, so on GPUs
  the decode inputs go device to device, with no host copy).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ds_triton.generation.slots import RowCopy

CACHE = "<the rank's own KV cache>"


@dataclass(frozen=True)
class TensorSlot:
    """A tensor argument whose values come from the process group."""

    index: int
    shape: tuple[int, ...]
    dtype: Any  # a torch.dtype (pickles by name)


@dataclass(frozen=True)
class Forward:
    """Run ``ModelRunner.<method>(*args, **kwargs)`` after applying the pending row copies.

    ``copies`` are the KV-cache row copies the leader made since the previous
    forward, each with the row lengths at that moment (``SlotKVCache.apply``).
    """

    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    cache_shape: tuple[int, int]  # (rows, row_tokens)
    copies: tuple[tuple[tuple[RowCopy, ...], tuple[int, ...]], ...] = ()
    tensors: int = 0


@dataclass(frozen=True)
class Stop:
    """End the worker's loop (the instance is being unloaded)."""


@dataclass(frozen=True)
class WorkerStatus:
    """What a worker reports on its status pipe: ``phase`` is ``started``, ``ready`` or ``failed``."""

    rank: int
    phase: str
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
