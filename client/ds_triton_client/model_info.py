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

    @property
    def rows_per_request(self) -> int:
        """Largest chunk one request may carry (a non-batching model takes one row)."""
        return max(1, self.max_batch_size)
