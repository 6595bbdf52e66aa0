"""``model.py`` of a test-only model: the shipped generation model whose forward passes fail on cue.

conftest.py copies this file into a temporary repository; the tests never import
it (it needs Triton's ``triton_python_backend_utils``, and it patches the engine
of the process it runs in). The faults are raised where a real one (a CUDA
error, out of memory) would come from, inside the forward passes, keyed by the
prompt:

- a prompt containing ``PREFILL_FAULT`` makes the prefill forward holding it raise;
- a prompt containing ``DECODE_FAULT`` makes the decode forward raise once that
  sequence has generated ``DECODE_FAULT_AFTER`` tokens.
"""

from __future__ import annotations

from typing import Any

from ds_triton.backend.entrypoint import TritonPythonModel as ShippedModel

# test_generation_faults.py sends these.
PREFILL_FAULT = "inject a prefill fault"
DECODE_FAULT = "inject a decode fault"
DECODE_FAULT_AFTER = 3


def _install_faults() -> None:
    # Imported here, not at module import: Triton imports model.py once more to
    # complete the config, and torch/transformers would slow that down for nothing.
    from ds_triton.generation.running_batch import RunningBatch

    prefill, decode = RunningBatch.prefill, RunningBatch.decode

    def failing_prefill(self: Any, sequences: Any, *args: Any, **kwargs: Any) -> Any:
        if any(PREFILL_FAULT in s.request.prompt for s in sequences):
            raise RuntimeError("injected prefill fault")
        return prefill(self, sequences, *args, **kwargs)

    def failing_decode(self: Any) -> Any:
        running = self.running_sequences()
        if any(DECODE_FAULT in s.request.prompt and s.num_generated >= DECODE_FAULT_AFTER for s in running):
            raise RuntimeError("injected decode fault")
        return decode(self)

    RunningBatch.prefill = failing_prefill  # type: ignore[method-assign]
    RunningBatch.decode = failing_decode  # type: ignore[method-assign]


class TritonPythonModel(ShippedModel):
    def initialize(self, args: dict[str, str]) -> None:
        _install_faults()
        super().initialize(args)
