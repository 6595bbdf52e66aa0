"""What the renderer and checker need to know about a model's checkpoint.

Read with ``AutoConfig`` (config only, no weights), so the embedding size is the
``hidden_size`` the encoder reports at run time whatever the architecture calls
it (``dim`` in DistilBERT, ``d_model``, ``n_embd``), and an architecture that
cannot serve the task is named by the same rule the loader applies.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ds_triton.checkpoint_files import CheckpointError, check_weights
from ds_triton.errors import ModelLoadError
from ds_triton.spec import ModelSpec


@dataclass(frozen=True)
class CheckpointInfo:
    """The parts of a checkpoint's ``config.json`` that shape a model's config."""

    path: Path
    model_type: str
    hidden_size: int


def inspect_checkpoint(spec: ModelSpec, version_dir: Path) -> CheckpointInfo:
    """Resolve ``spec``'s checkpoint and check that its architecture fits the task.

    Raises:
        CheckpointError: a folder outside the repository (or allowed roots), no
            folder, no ``config.json``, no weights or only pickle-based ones without
            ``allow_pickle``, an unreadable config, or an architecture that the task
            cannot load (the message names it).
    """
    path = spec.resolve_checkpoint(version_dir)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint folder {path} does not exist")
    if not (path / "config.json").is_file():
        raise CheckpointError(
            f"checkpoint folder {path} has no config.json (expected a local Hugging Face checkpoint)"
        )
    check_weights(path, spec.allow_pickle)
    config = _read_config(path)
    _check_architecture(spec, config)
    hidden = getattr(config, "hidden_size", None) or getattr(config, "d_model", None)
    if not isinstance(hidden, int) or hidden < 1:
        raise CheckpointError(f"checkpoint {path}: config.json gives no hidden size")
    return CheckpointInfo(path=path, model_type=str(config.model_type), hidden_size=hidden)


def _read_config(path: Path) -> Any:
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(path, local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError, KeyError) as exc:
        raise CheckpointError(f"checkpoint {path}: unreadable config.json: {exc}") from exc


def _check_architecture(spec: ModelSpec, config: Any) -> None:
    # The loader's own rule, so `check` and `add-model` refuse exactly what a load would.
    from ds_triton.loading import model_class_for

    try:
        model_class_for(spec, config)
    except ModelLoadError as exc:
        raise CheckpointError(str(exc)) from exc
