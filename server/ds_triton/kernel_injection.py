"""Whether an instance wraps its model with DeepSpeed's injected inference kernels, and why.

``kernel_inject`` in ``model.json`` is ``auto``, ``on`` or ``off``. Injection
replaces each transformer layer with DeepSpeed's fused CUDA kernels, which
needs three things:

* a CUDA device: DeepSpeed's CPU accelerator has no transformer-inference op;
* an injection policy for the architecture: ``replace_with_kernel_inject``
  swaps only layer classes listed in ``deepspeed.module_inject.replace_policy``
  (BERT/RoBERTa, DistilBERT, GPT-2, GPT-J, GPT-Neo, GPT-NeoX, OPT, BLOOM, CLIP,
  Llama, ...); on any other model it silently does nothing;
* the ``transformer_inference`` op, prebuilt or JIT-built with ``ninja`` and an
  ``nvcc`` that matches torch's CUDA (otherwise "Unable to JIT load").

``auto`` injects when all three hold and otherwise runs plain
``init_inference``, with one log line saying which one failed; ``on`` refuses
to load with that reason instead. Generation never injects: the injected
attention keeps its own KV-cache workspace, which in-flight batching (rows
joining and leaving between steps) cannot share.

The op and policy lookups are parameters, so the same decision runs in CPU
tests with a simulated GPU and simulated missing ops.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ds_triton.devices import Placement
from ds_triton.errors import ModelLoadError
from ds_triton.spec import ModelSpec

# Returns None when DeepSpeed's inference op loads here, else why it does not.
OpsProbe = Callable[[], str | None]
# Returns the names of the DeepSpeed policies that cover layers of the module.
PolicyLookup = Callable[[Any], list[str]]


@dataclass(frozen=True)
class InjectionDecision:
    """What an instance does, and the reason to log."""

    inject: bool
    reason: str


def decide(
    spec: ModelSpec,
    placement: Placement,
    module: Any,
    *,
    ops_probe: OpsProbe | None = None,
    policies_for: PolicyLookup | None = None,
) -> InjectionDecision:
    """Decide kernel injection for one instance of ``spec`` on ``placement``.

    Raises:
        ModelLoadError: ``kernel_inject`` is ``on`` and injection cannot run
            here; the message says why.
    """
    if spec.kernel_inject == "off":
        return InjectionDecision(False, "kernel_inject is 'off' in model.json")
    why_not = _obstacle(spec, placement, module, ops_probe or inference_ops_probe,
                        policies_for or injection_policies)
    if why_not is None:
        return InjectionDecision(True, "DeepSpeed's injected kernels replace the transformer layers")
    if spec.kernel_inject == "on":
        raise ModelLoadError(
            f"model {spec.name!r}: kernel_inject 'on' cannot be honoured: {why_not}; "
            "use 'auto' to fall back to plain init_inference, or 'off'"
        )
    return InjectionDecision(False, why_not)


def _obstacle(
    spec: ModelSpec, placement: Placement, module: Any, ops_probe: OpsProbe, policies_for: PolicyLookup
) -> str | None:
    """The first reason injection cannot run, or None when it can."""
    if spec.task == "generation":
        return (
            "task 'generation' never injects: DeepSpeed's injected attention keeps its own KV "
            "cache, which in-flight batching cannot share"
        )
    if not placement.is_cuda:
        return "this instance runs on CPU, and DeepSpeed's injected kernels need CUDA"
    if not policies_for(module):
        return (
            f"DeepSpeed has no injection policy for {type(module).__name__} (its layers are none "
            "of the classes in deepspeed.module_inject.replace_policy)"
        )
    return ops_probe()


def injection_policies(module: Any) -> list[str]:
    """Names of the DeepSpeed policies whose layer classes occur in ``module``.

    The same lookup ``replace_with_kernel_inject`` does: each policy fills in
    its original layer classes when instantiated, and a layer is replaced when
    its class is exactly one of them.
    """
    from deepspeed.module_inject.replace_policy import replace_policies

    classes = {type(m) for m in module.modules()}
    found = []
    for policy in replace_policies:
        try:
            policy(None)  # populates policy._orig_layer_class
        except Exception:
            continue
        originals = policy._orig_layer_class
        originals = originals if isinstance(originals, list) else [originals]
        if classes & {c for c in originals if c is not None}:
            found.append(policy.__name__)
    return found


def inference_ops_probe() -> str | None:
    """None when DeepSpeed's ``transformer_inference`` op loads (building it if needed), else why."""
    from deepspeed.accelerator import get_accelerator

    if get_accelerator().device_name() != "cuda":
        return f"DeepSpeed's accelerator is {get_accelerator().device_name()!r}, not CUDA"
    from deepspeed.ops.op_builder import InferenceBuilder

    builder = InferenceBuilder()
    if not builder.is_compatible():
        return "DeepSpeed's transformer_inference op is not compatible with this GPU or CUDA"
    try:
        builder.load()  # what injection would do first; JIT-builds once, then cached
    except Exception as exc:
        return f"DeepSpeed's transformer_inference op does not load: {type(exc).__name__}: {exc}"
    return None
