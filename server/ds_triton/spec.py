"""Typed model spec: the one file (``<model>/1/model.json``) a model folder is made from.

``config.pbtxt`` is rendered from this spec (see ``ds_triton.repository``) and the
model code reads it at load time, so the two can never disagree.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ds_triton.errors import SpecError

SPEC_FILENAME = "model.json"
PACKAGE_PREFIX = "package:"

Task = Literal["embedding", "generation"]
DType = Literal["fp32", "fp16", "bf16"]
Pooling = Literal["mean", "cls", "last_token"]
KernelInject = Literal["auto", "on", "off"]

TASKS: tuple[str, ...] = ("embedding", "generation")
DTYPES: tuple[str, ...] = ("fp32", "fp16", "bf16")
POOLINGS: tuple[str, ...] = ("mean", "cls", "last_token")
KERNEL_INJECT: tuple[str, ...] = ("auto", "on", "off")


@dataclass(frozen=True)
class BatchingSpec:
    """Triton's dynamic batcher settings (embedding models only)."""

    max_batch_size: int = 64
    preferred_batch_sizes: tuple[int, ...] = (16, 32, 64)
    max_queue_delay_us: int = 2000
    max_queue_size: int = 1024
    queue_timeout_us: int = 0

    def validate(self) -> None:
        if self.max_batch_size < 1:
            raise SpecError(f"batching.max_batch_size must be >= 1, got {self.max_batch_size}")
        for size in self.preferred_batch_sizes:
            if not 1 <= size <= self.max_batch_size:
                raise SpecError(
                    f"batching.preferred_batch_sizes: {size} is outside 1..max_batch_size "
                    f"({self.max_batch_size})"
                )
        if self.max_queue_delay_us < 0 or self.max_queue_size < 0 or self.queue_timeout_us < 0:
            raise SpecError("batching: queue delay, size and timeout must be >= 0")


@dataclass(frozen=True)
class DeploymentSpec:
    """Where instances run: CPU, or data-parallel replicas on GPUs.

    ``gpus`` is ``"all"`` (resolved from the machine when the config is rendered)
    or an explicit list of device ids; it is ignored when ``device`` is ``"cpu"``.
    ``threads_per_instance`` of ``None`` means cores // instances on CPU.
    """

    device: Literal["cpu", "gpu"] = "cpu"
    gpus: Literal["all"] | tuple[int, ...] = "all"
    instances_per_device: int = 1
    threads_per_instance: int | None = None

    def validate(self) -> None:
        if self.device not in ("cpu", "gpu"):
            raise SpecError(f"deployment.device must be 'cpu' or 'gpu', got {self.device!r}")
        if self.instances_per_device < 1:
            raise SpecError(f"deployment.instances_per_device must be >= 1, got {self.instances_per_device}")
        if self.threads_per_instance is not None and self.threads_per_instance < 1:
            raise SpecError(f"deployment.threads_per_instance must be >= 1, got {self.threads_per_instance}")
        if self.gpus != "all" and (
            not isinstance(self.gpus, tuple)
            or not self.gpus
            or any(not isinstance(g, int) or g < 0 for g in self.gpus)
        ):
            raise SpecError(f"deployment.gpus must be 'all' or a list of ids >= 0, got {self.gpus!r}")
        if self.gpus != "all" and len(set(self.gpus)) != len(self.gpus):
            raise SpecError(f"deployment.gpus lists a GPU more than once: {list(self.gpus)}")


@dataclass(frozen=True)
class EmbeddingSpec:
    """Options of embedding models.

    ``max_length`` of ``None`` takes the checkpoint's own limit (sentence-transformers'
    ``max_seq_length`` when present). Over-long texts are truncated and flagged in the
    ``truncated`` output when ``truncate`` is true, rejected per request otherwise.
    ``length_bucketing`` lets one ``execute()`` sort its texts by length and run
    them in as few forward passes as pays off (one when lengths are alike), instead
    of padding every text to the longest; off keeps request order and pads each
    forward to its longest text.
    ``max_tokens_per_forward`` is the activation budget: no forward holds more
    padded token positions (rows x longest row) than this, so a batch of long
    texts runs as several forwards and an instance's peak memory stays bounded
    (about 25 KB per token for MiniLM in fp32 on CPU). It must be at least
    ``max_length``.
    """

    pooling: Pooling = "mean"
    normalize: bool = True
    max_length: int | None = None
    truncate: bool = True
    length_bucketing: bool = True
    max_tokens_per_forward: int = 4096

    def validate(self) -> None:
        if self.pooling not in POOLINGS:
            raise SpecError(f"embedding.pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.max_length is not None and self.max_length < 1:
            raise SpecError(f"embedding.max_length must be >= 1, got {self.max_length}")
        if self.max_tokens_per_forward < max(1, self.max_length or 1):
            raise SpecError(
                "embedding.max_tokens_per_forward must be >= max_length "
                f"({self.max_length or 1}), got {self.max_tokens_per_forward}"
            )


@dataclass(frozen=True)
class GenerationSpec:
    """Options of generation (decoupled, in-flight batched) models.

    The KV cache is preallocated as ``max_concurrent_sequences`` rows of
    ``max_prompt_tokens + max_tokens_limit`` positions (capped at the model's
    context). A request runs once a row is free and its prompt plus its
    ``max_tokens`` fit in what is left of ``max_batch_total_tokens`` (the KV
    tokens all running sequences may hold); up to ``max_queued_requests`` more
    wait, and requests beyond that are refused at once with UNAVAILABLE. Each
    step prefills at most ``max_prefill_tokens`` prompt tokens, so a long prompt
    is prefilled in chunks between decode steps. Prompts longer than
    ``max_prompt_tokens`` and ``max_tokens`` above ``max_tokens_limit`` are
    refused with INVALID_ARG. ``default_max_tokens`` applies when a request
    names none (vLLM's 16).
    """

    max_concurrent_sequences: int = 16
    max_queued_requests: int = 64
    max_prompt_tokens: int = 512
    max_tokens_limit: int = 512
    default_max_tokens: int = 16
    max_batch_total_tokens: int = 16384
    max_prefill_tokens: int = 128

    def validate(self) -> None:
        for name in (
            "max_concurrent_sequences",
            "max_prompt_tokens",
            "max_tokens_limit",
            "max_batch_total_tokens",
            "max_prefill_tokens",
        ):
            if getattr(self, name) < 1:
                raise SpecError(f"generation.{name} must be >= 1, got {getattr(self, name)}")
        if self.max_queued_requests < 0:
            raise SpecError(
                f"generation.max_queued_requests must be >= 0, got {self.max_queued_requests}"
            )
        if not 1 <= self.default_max_tokens <= self.max_tokens_limit:
            raise SpecError(
                "generation.default_max_tokens must be between 1 and max_tokens_limit "
                f"({self.max_tokens_limit}), got {self.default_max_tokens}"
            )
        longest = self.max_prompt_tokens + self.max_tokens_limit
        if self.max_batch_total_tokens < longest:
            raise SpecError(
                f"generation.max_batch_total_tokens ({self.max_batch_total_tokens}) must be at least "
                f"max_prompt_tokens + max_tokens_limit ({longest}), or the longest request "
                "could never run"
            )


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to render a model's config and to load it.

    ``checkpoint`` is a local folder: absolute, relative to the model's version
    folder, or ``package:<module>/<subpath>`` for weights shipped in a Python package.
    """

    name: str
    task: Task
    checkpoint: str
    dtype: DType = "fp32"
    kernel_inject: KernelInject = "auto"
    batching: BatchingSpec = field(default_factory=BatchingSpec)
    deployment: DeploymentSpec = field(default_factory=DeploymentSpec)
    embedding: EmbeddingSpec | None = None
    generation: GenerationSpec | None = None
    profile: bool = False  # write the step timeline (see ds_triton.profiling)

    def validate(self) -> None:
        """Raise ``SpecError`` naming the first inconsistent key."""
        if not self.name or not self.name.replace("_", "").replace("-", "").isalnum():
            raise SpecError(f"name must be letters, digits, '_' or '-', got {self.name!r}")
        if self.task not in TASKS:
            raise SpecError(f"task must be one of {TASKS}, got {self.task!r}")
        if self.dtype not in DTYPES:
            raise SpecError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        if self.kernel_inject not in KERNEL_INJECT:
            raise SpecError(f"kernel_inject must be one of {KERNEL_INJECT}, got {self.kernel_inject!r}")
        if not self.checkpoint:
            raise SpecError("checkpoint must name a local folder")
        if not isinstance(self.profile, bool):
            raise SpecError(f"profile must be true or false, got {self.profile!r}")
        self.batching.validate()
        self.deployment.validate()
        if self.task == "embedding":
            if self.generation is not None:
                raise SpecError("an embedding model takes no 'generation' options")
            self.embedding_options.validate()
        else:
            if self.embedding is not None:
                raise SpecError("a generation model takes no 'embedding' options")
            self.generation_options.validate()

    @property
    def embedding_options(self) -> EmbeddingSpec:
        return self.embedding or EmbeddingSpec()

    @property
    def generation_options(self) -> GenerationSpec:
        return self.generation or GenerationSpec()

    def resolve_checkpoint(self, version_dir: Path) -> Path:
        """Return the checkpoint folder as an absolute path (it may not exist)."""
        if self.checkpoint.startswith(PACKAGE_PREFIX):
            module, _, subpath = self.checkpoint[len(PACKAGE_PREFIX) :].partition("/")
            found = importlib.util.find_spec(module)
            if found is None or not found.submodule_search_locations:
                raise SpecError(f"checkpoint {self.checkpoint!r}: package {module!r} is not installed")
            return Path(next(iter(found.submodule_search_locations))) / subpath
        path = Path(self.checkpoint).expanduser()
        return path if path.is_absolute() else (version_dir / path).resolve()

    # -- (de)serialisation ----------------------------------------------------

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        """Build and validate a spec; unknown keys are errors, not silently ignored."""
        try:
            spec = _build(cls, data, path="")
        except TypeError as exc:  # wrong value types inside nested sections
            raise SpecError(str(exc)) from exc
        spec.validate()
        return spec

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict; task sections left at ``None`` are omitted."""
        data = dataclasses.asdict(self)
        return {k: v for k, v in data.items() if not (k in _SECTIONS and v is None)}

    @classmethod
    def load(cls, path: Path) -> ModelSpec:
        """Read ``model.json`` (a file, or a model or version folder holding one)."""
        path = Path(path)
        if path.is_dir():
            candidates = [path / SPEC_FILENAME, path / "1" / SPEC_FILENAME]
            path = next((c for c in candidates if c.is_file()), candidates[0])
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError as exc:
            raise SpecError(f"no {SPEC_FILENAME} at {path}") from exc
        except json.JSONDecodeError as exc:
            raise SpecError(f"{path}: invalid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise SpecError(f"{path}: expected a JSON object")
        return cls.from_dict(data)

    def dumps(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"


_SECTIONS: dict[str, type] = {
    "batching": BatchingSpec,
    "deployment": DeploymentSpec,
    "embedding": EmbeddingSpec,
    "generation": GenerationSpec,
}


def _build(cls: type, data: Any, path: str) -> Any:
    if not isinstance(data, dict):
        raise SpecError(f"{path or 'spec'} must be a JSON object, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        where = f" in {path!r}" if path else ""
        raise SpecError(f"unknown key(s){where}: {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key in _SECTIONS and cls is ModelSpec:
            kwargs[key] = None if value is None else _build(_SECTIONS[key], value, key)
        elif isinstance(value, list):
            kwargs[key] = tuple(value)
        else:
            kwargs[key] = value
    return cls(**kwargs)
