"""Load a local Hugging Face checkpoint and wrap it with ``deepspeed.init_inference``.

One function serves every model of a task, whatever its architecture: the
Auto classes pick the implementation, and an architecture that does not fit
the task fails here with a message that names it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ds_triton.devices import Placement
from ds_triton.errors import ModelLoadError
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


def use_kernel_injection(spec: ModelSpec, placement: Placement) -> bool:
    """Whether this instance wraps the model with DeepSpeed's injected kernels.

    The fused kernels need CUDA, so ``auto`` turns them on only there. Generation
    never uses them: in-flight batching adds and removes rows of the Hugging Face
    KV cache between steps, and the injected attention keeps its own KV-cache
    workspace that ignores that cache, so ``on`` is refused instead of producing
    wrong tokens.
    """
    if spec.task == "generation":
        if spec.kernel_inject == "on":
            raise ModelLoadError(
                f"model {spec.name!r}: kernel_inject 'on' is not supported for task 'generation': "
                "DeepSpeed's injected kernels keep their own KV cache, which in-flight batching "
                "cannot share; use 'auto' or 'off'"
            )
        return False
    if spec.kernel_inject == "on" and not placement.is_cuda:
        raise ModelLoadError(
            f"model {spec.name!r}: kernel_inject 'on' needs a CUDA GPU, but this instance "
            "runs on CPU; use 'auto' or 'off'"
        )
    return spec.kernel_inject == "on" or (spec.kernel_inject == "auto" and placement.is_cuda)


def load_model(spec: ModelSpec, version_dir: Path, placement: Placement) -> LoadedModel:
    """Load ``spec``'s checkpoint for its task onto ``placement`` and wrap it in DeepSpeed."""
    import torch

    torch.set_num_threads(placement.threads)
    checkpoint = spec.resolve_checkpoint(version_dir)
    if not (checkpoint / "config.json").is_file():
        raise ModelLoadError(
            f"model {spec.name!r}: checkpoint folder {checkpoint} has no config.json "
            "(expected a local Hugging Face checkpoint)"
        )
    config = _load_config(spec, checkpoint)
    model_class = model_class_for(spec, config)
    dtype = torch_dtype(spec.dtype)
    try:
        module = model_class.from_pretrained(checkpoint, dtype=dtype, local_files_only=True)
        tokenizer = _load_tokenizer(checkpoint)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"model {spec.name!r}: cannot load {checkpoint}: {exc}") from exc
    module.eval().to(placement.device)
    inject = use_kernel_injection(spec, placement)
    engine = _init_inference(module, dtype, inject)
    LOG.info(
        "loaded %s (%s) from %s on %s, %d threads, kernel injection %s",
        spec.name,
        config.model_type,
        checkpoint,
        placement.device,
        placement.threads,
        inject,
    )
    return LoadedModel(engine, engine.module, tokenizer, config, checkpoint, placement.device, inject)


def _load_config(spec: ModelSpec, checkpoint: Path) -> Any:
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(checkpoint, local_files_only=True)
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


def _load_tokenizer(checkpoint: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(checkpoint, local_files_only=True)


def _init_inference(module: Any, dtype: Any, kernel_inject: bool) -> Any:
    import deepspeed

    return deepspeed.init_inference(module, dtype=dtype, replace_with_kernel_inject=kernel_inject)
