"""What the client needs to know about a model, read once from its Triton config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ModelInfo:
    """The parts of a model config that shape requests.

    Attributes:
        name: Model name.
        max_batch_size: Rows per request (0 = the model does not batch).
        output_dims: Per-output dims without the batch dimension.
        decoupled: Whether the model may send several responses per request.
    """

    name: str
    max_batch_size: int
    output_dims: dict[str, tuple[int, ...]]
    decoupled: bool

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ModelInfo:
        """Parse the config JSON of HTTP ``/config`` or gRPC ``get_model_config``.

        gRPC's JSON omits zero values and writes int64 as strings; both shapes are accepted.
        """
        outputs = {
            str(o.get("name")): tuple(int(d) for d in o.get("dims", [])) for o in config.get("output", [])
        }
        policy = config.get("model_transaction_policy") or {}
        return cls(
            name=str(config.get("name", "")),
            max_batch_size=int(config.get("max_batch_size", 0) or 0),
            output_dims=outputs,
            decoupled=bool(policy.get("decoupled", False)),
        )

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> ModelInfo:
        """What the model's metadata tells, for servers that restrict the config API.

        Metadata stays open under an admin key but has no ``max_batch_size``: a model whose
        every input starts with a variable (batch) dimension counts as batching, and is sent
        one row per request (Triton's dynamic batcher still merges them).
        """
        inputs = [[int(d) for d in i.get("shape", [])] for i in metadata.get("inputs", [])]
        batched = bool(inputs) and all(shape[:1] == [-1] for shape in inputs)
        outputs = {
            str(o.get("name")): tuple(int(d) for d in o.get("shape", []))[1 if batched else 0 :]
            for o in metadata.get("outputs", [])
        }
        return cls(str(metadata.get("name", "")), 1 if batched else 0, outputs, decoupled=False)

    @property
    def rows_per_request(self) -> int:
        """Largest chunk one request may carry (a non-batching model takes one row)."""
        return max(1, self.max_batch_size)
