"""Which DeepSpeed kernels a generation model may use.

In-flight batching adds and removes rows of the Hugging Face KV cache between
steps. DeepSpeed's injected inference kernels (``replace_with_kernel_inject``)
replace the attention modules with ones that keep their own KV-cache workspace
and ignore that cache object, so the two cannot be combined: for generation
``auto`` means off, and ``on`` is refused with a message instead of producing
wrong tokens.
"""

from __future__ import annotations

import dataclasses

from ds_triton.errors import ModelLoadError
from ds_triton.spec import ModelSpec


def generation_load_spec(spec: ModelSpec) -> ModelSpec:
    """``spec`` as the generation loader must see it (kernel injection off)."""
    if spec.kernel_inject == "on":
        raise ModelLoadError(
            f"model {spec.name!r}: kernel_inject 'on' is not supported for task 'generation': "
            "DeepSpeed's injected kernels keep their own KV cache, which in-flight batching "
            "cannot share; use 'auto' or 'off'"
        )
    return dataclasses.replace(spec, kernel_inject="off")
