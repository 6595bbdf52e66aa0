"""Load a local Hugging Face checkpoint and wrap it with ``deepspeed.init_inference``.

One function serves every model of a task, whatever its architecture: the
Auto classes pick the implementation, and an architecture that does not fit
the task fails here with a message that names it. Only checkpoint files inside
the repository (or an allowed root) are read, weights come from safetensors
unless the spec allows pickle, and a checkpoint's own Python code never runs
(``trust_remote_code`` is always off).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ds_triton import kernel_injection
from ds_triton.checkpoint_files import check_weights
from ds_triton.devices import Placement
from ds_triton.errors import ModelLoadError
from ds_triton.kernel_injection import OpsProbe, PolicyLookup
from ds_triton.spec import ModelSpec

LOG = logging.getLogger(__name__)

# No model hub at run time: every load is from a local folder.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@dataclass
class LoadedModel:
    """A ready-to-run model: the DeepSpeed engine, its module, tokenizer and config."""

    engine: Any
    module: Any
    tokenizer: Any
    config: Any
    checkpoint: Path
    device: str
    kernel_inject: bool


def torch_dtype(name: str) -> Any:
    import torch

    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[name]


def load_model(
    spec: ModelSpec,
    version_dir: Path,
    placement: Placement,
    *,
    ops_probe: OpsProbe | None = None,
    policies_for: PolicyLookup | None = None,
) -> LoadedModel:
    """Load ``spec``'s checkpoint for its task onto ``placement`` and wrap it in DeepSpeed.

    ``ops_probe`` and ``policies_for`` replace DeepSpeed's own op and policy
    lookups in the kernel-injection decision (see ``ds_triton.kernel_injection``).
    """
    import torch

    torch.set_num_threads(placement.threads)
    checkpoint = _checkpoint_folder(spec, version_dir)
    weights = check_weights(checkpoint, spec.allow_pickle)  # safetensors, or pickle if opted in
    config = _load_config(spec, checkpoint)
    model_class = model_class_for(spec, config)

    def load_weights() -> Any:
        return _load_weights(spec, model_class, checkpoint, use_safetensors=bool(weights.safetensors))

    module = load_weights()
    tokenizer = _load_tokenizer(spec, checkpoint)
    decision = kernel_injection.decide(
        spec, placement, module, ops_probe=ops_probe, policies_for=policies_for
    )
    LOG.info("%s: kernel injection %s: %s", spec.name, "on" if decision.inject else "off", decision.reason)
    if placement.is_cuda:
        # DeepSpeed moves the module to the *current* CUDA device; without this every
        # instance would land on cuda:0 whatever GPU Triton gave it.
        torch.cuda.set_device(placement.device_index)
    engine, injected = _wrap(spec, module, placement, decision.inject, load_weights)
    LOG.info(
        "loaded %s (%s) from %s on %s in %s, %d threads",
        spec.name, config.model_type, checkpoint, placement.device, spec.dtype, placement.threads,
    )
    return LoadedModel(engine, engine.module, tokenizer, config, checkpoint, placement.device, injected)


def _checkpoint_folder(spec: ModelSpec, version_dir: Path) -> Path:
    checkpoint = spec.resolve_checkpoint(version_dir)  # refuses paths outside the repository
    if not (checkpoint / "config.json").is_file():
        raise ModelLoadError(
            f"model {spec.name!r}: checkpoint folder {checkpoint} has no config.json "
            "(expected a local Hugging Face checkpoint)"
        )
    return checkpoint


def _load_weights(spec: ModelSpec, model_class: Any, checkpoint: Path, use_safetensors: bool) -> Any:
    try:
        return model_class.from_pretrained(
            checkpoint, dtype=torch_dtype(spec.dtype), local_files_only=True, trust_remote_code=False,
            use_safetensors=use_safetensors,
        )
    except (OSError, ValueError, RuntimeError) as exc:  # e.g. weights that do not fit the config
        raise ModelLoadError(f"model {spec.name!r}: cannot load {checkpoint}: {exc}") from exc


def _wrap(
    spec: ModelSpec, module: Any, placement: Placement, inject: bool, reload: Callable[[], Any]
) -> tuple[Any, bool]:
    """``init_inference`` on ``placement``; with ``auto``, a failed injection runs without it."""
    dtype = torch_dtype(spec.dtype)
    tensor_parallel = spec.deployment.tensor_parallel
    if tensor_parallel > 1:
        # DeepSpeed's AutoTP slices the model on the host and moves each rank's shard
        # to its device: moving the whole model there first might not fit. Generation
        # (the only sharded task) never injects.
        module.eval()
        return _init_inference(module, dtype, False, tensor_parallel), False
    module.eval().to(placement.device)
    if not inject:
        return _init_inference(module, dtype, False), False
    try:
        return _init_inference(module, dtype, True), True
    except Exception as exc:
        why = f"{type(exc).__name__}: {exc}"
        if spec.kernel_inject == "on":
            raise ModelLoadError(f"model {spec.name!r}: kernel injection failed: {why}") from exc
        LOG.warning("%s: kernel injection off: it failed (%s); loading again without it", spec.name, why)
    fresh = reload()  # the failed attempt may have replaced some layers already
    fresh.eval().to(placement.device)
    return _init_inference(fresh, dtype, False), False


def _load_config(spec: ModelSpec, checkpoint: Path) -> Any:
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(checkpoint, local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(f"model {spec.name!r}: unreadable config in {checkpoint}: {exc}") from exc


def model_class_for(spec: ModelSpec, config: Any) -> Any:
    """The Auto class for the task, or a clear error naming the architecture."""
    from transformers import AutoModel, AutoModelForCausalLM
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_MAPPING_NAMES,
    )

    if spec.task == "generation":
        if config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES or getattr(
            config, "is_encoder_decoder", False
        ):
            raise ModelLoadError(
                f"model {spec.name!r}: architecture {config.model_type!r} "
                f"({', '.join(config.architectures or [])}) is not a causal language model; "
                "task 'generation' needs one (GPT-2, Llama, OPT, GPT-NeoX, ...)"
            )
        return AutoModelForCausalLM
    if config.model_type not in MODEL_MAPPING_NAMES or getattr(config, "is_encoder_decoder", False):
        raise ModelLoadError(
            f"model {spec.name!r}: architecture {config.model_type!r} has no encoder that "
            "task 'embedding' can pool (BERT, RoBERTa, XLM-R, DistilBERT, MPNet, ...)"
        )
    return AutoModel


def _load_tokenizer(spec: ModelSpec, checkpoint: Path) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(checkpoint, local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"model {spec.name!r}: no usable tokenizer in {checkpoint}: {exc}") from exc


def _init_inference(module: Any, dtype: Any, kernel_inject: bool, tensor_parallel: int = 1) -> Any:
    """``deepspeed.init_inference``; with ``tensor_parallel`` > 1, AutoTP over the process group.

    The group must exist already (``ds_triton.tensor_parallel`` forms it).
    """
    import deepspeed

    extra: dict[str, Any] = {}
    if tensor_parallel > 1:
        extra["tensor_parallel"] = {"tp_size": tensor_parallel}
    return deepspeed.init_inference(module, dtype=dtype, replace_with_kernel_inject=kernel_inject, **extra)
