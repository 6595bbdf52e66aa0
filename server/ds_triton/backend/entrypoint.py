"""The one ``TritonPythonModel`` every model folder's ``model.py`` re-exports.

``initialize`` reads as its steps: parse Triton's args, read the spec, pick
the task's handler (which loads the model). The handler owns everything else.
"""

from __future__ import annotations

import gc
import logging
from typing import Any, Protocol

from ds_triton.backend.context import InstanceContext

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
LOG = logging.getLogger(__name__)


class TaskHandler(Protocol):
    def execute(self, requests: list[Any]) -> list[Any] | None: ...

    def finalize(self) -> None: ...


def _handler_for(context: InstanceContext) -> TaskHandler:
    # Imported lazily so an embedding instance never imports generation code.
    if context.spec.task == "embedding":
        from ds_triton.backend.embedding import EmbeddingHandler

        return EmbeddingHandler(context)
    from ds_triton.backend.generation import GenerationHandler

    return GenerationHandler(context)


class TritonPythonModel:
    """Triton's entry point; delegates to the handler of the model's task."""

    def initialize(self, args: dict[str, str]) -> None:
        context = InstanceContext.from_args(args)
        self._handler = _handler_for(context)
        # Loading torch, transformers and deepspeed leaves ~400k long-lived objects;
        # a full collection over them took 170 ms here, stalling whatever request
        # triggers it. Freezing hides them from the collector; request garbage is
        # still collected.
        gc.freeze()
        LOG.info("%s ready (%s on %s)", context.instance_name, context.spec.task, context.placement.device)

    def execute(self, requests: list[Any]) -> list[Any] | None:
        return self._handler.execute(requests)

    def finalize(self) -> None:
        handler = getattr(self, "_handler", None)
        if handler is not None:
            handler.finalize()
