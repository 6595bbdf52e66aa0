"""Typed model spec: the one file (``<model>/1/model.json``) a model folder is made from.

``config.pbtxt`` is rendered from this spec (see ``ds_triton.repository``) and the
model code reads it at load time, so the two can never disagree.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from ds_triton.checkpoint_files import resolve_checkpoint
from ds_triton.errors import SpecError
from ds_triton.typed_json import build, check_minimums, setting

SPEC_FILENAME = "model.json"

Task = Literal["embedding", "generation"]
DType = Literal["fp32", "fp16", "bf16"]
Pooling = Literal["mean", "cls", "last_token"]
KernelInject = Literal["auto", "on", "off"]
LogprobsMode = Literal["raw_logprobs", "processed_logprobs"]

TASKS: tuple[str, ...] = get_args(Task)
DTYPES: tuple[str, ...] = get_args(DType)
POOLINGS: tuple[str, ...] = get_args(Pooling)
KERNEL_INJECT: tuple[str, ...] = get_args(KernelInject)
LOGPROBS_MODES: tuple[str, ...] = get_args(LogprobsMode)


@dataclass(frozen=True)
class BatchingSpec:
    """Triton's dynamic batcher and its queue policy (embedding models only).

    ``latency_budget_ms`` is the time an accepted request may spend in the
    server, queue and forward pass together, at the 99th percentile. When set,
    the queue policy follows from it (``ds_triton.repository.queue_policy``): a
    request that waited half the budget for a batch is rejected with UNAVAILABLE
    instead of being run late, and the queue holds one preferred batch per
    instance, so an overloaded model refuses at once instead of queueing for
    seconds. A request may ask for a shorter wait (``timeout``
    request parameter) when ``allow_timeout_override`` is true, never a longer
    one. ``max_queue_size`` and ``queue_timeout_us`` replace the derived values
    when given (0: unbounded, no timeout).

    Unset by default: any queue policy turns off Triton 2.51's batch
    prefetching, and a model with a single instance then stalls requests up to
    500 ms (``perf/repro/batcher_lost_wakeup.py``); ``ds-triton check`` refuses
    a queue policy on one instance.
    """

    max_batch_size: int = setting(64, minimum=1)
    preferred_batch_sizes: tuple[int, ...] = setting((16, 32, 64), minimum=1)
    max_queue_delay_us: int = setting(2000, minimum=0)
    latency_budget_ms: int | None = setting(None, minimum=1)
    max_queue_size: int | None = setting(None, minimum=0)
    queue_timeout_us: int | None = setting(None, minimum=0)
    allow_timeout_override: bool = True

    def validate(self) -> None:
        check_minimums(self, "batching")
        for size in self.preferred_batch_sizes:
            if size > self.max_batch_size:
                raise SpecError(
                    f"batching.preferred_batch_sizes: {size} is outside 1..max_batch_size "
                    f"({self.max_batch_size})"
                )


@dataclass(frozen=True)
class DeploymentSpec:
    """Where instances run: CPU, or data-parallel replicas on GPUs.

    ``gpus`` is ``"all"`` (resolved from the machine when the config is rendered)
    or an explicit list of device ids; it is ignored when ``device`` is ``"cpu"``.
    ``threads_per_instance`` of ``None`` means cores // instances on CPU.
    ``tensor_parallel`` above 1 (generation only) shards one instance over that
    many ranks with DeepSpeed AutoTP: the first N GPUs of ``gpus`` (one rank per
    GPU, NCCL), or N processes on CPU (gloo); see ``ds_triton.tensor_parallel``.
    """

    device: Literal["cpu", "gpu"] = "cpu"
    gpus: Literal["all"] | tuple[int, ...] = setting("all", minimum=0)
    instances_per_device: int = setting(1, minimum=1)
    threads_per_instance: int | None = setting(None, minimum=1)
    tensor_parallel: int = setting(1, minimum=1)

    def validate(self) -> None:
        check_minimums(self, "deployment")
        if self.gpus != "all" and not self.gpus:
            raise SpecError("deployment.gpus must be \"all\" or a list of ids >= 0, got []")
        if self.tensor_parallel > 1 and self.instances_per_device != 1:
            raise SpecError(
                "deployment.tensor_parallel > 1 runs one instance over several ranks; "
                f"instances_per_device must be 1, got {self.instances_per_device}"
            )
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
    max_length: int | None = setting(None, minimum=1)
    truncate: bool = True
    length_bucketing: bool = True
    max_tokens_per_forward: int = setting(4096, minimum=1)

    def validate(self) -> None:
        check_minimums(self, "embedding")
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
    names none (vLLM's 16). ``logprobs_mode`` is vLLM's engine option of that
    name: ``raw_logprobs`` (its default) reports the model's own distribution,
    ``processed_logprobs`` the one each token was drawn from (after penalties,
    bias, masks, temperature, min-p, top-k and top-p).
    """

    max_concurrent_sequences: int = setting(16, minimum=1)
    max_queued_requests: int = setting(64, minimum=0)
    max_prompt_tokens: int = setting(512, minimum=1)
    max_tokens_limit: int = setting(512, minimum=1)
    default_max_tokens: int = setting(16, minimum=1)
    max_batch_total_tokens: int = setting(16384, minimum=1)
    max_prefill_tokens: int = setting(128, minimum=1)
    logprobs_mode: LogprobsMode = "raw_logprobs"

    def validate(self) -> None:
        check_minimums(self, "generation")
        if self.logprobs_mode not in LOGPROBS_MODES:
            raise SpecError(
                f"generation.logprobs_mode must be one of {LOGPROBS_MODES}, got {self.logprobs_mode!r}"
            )
        if self.default_max_tokens > self.max_tokens_limit:
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

    ``checkpoint`` is a local folder: relative to the model's version folder,
    ``package:<module>/<subpath>`` for weights shipped in a Python package, or
    absolute; it must stay inside the repository, the package, or a folder the
    server allows (``ds_triton.checkpoint_files``). Its weights load from
    safetensors; ``allow_pickle`` also accepts pickle-based ``.bin`` files,
    which can run code while they load.
    """

    name: str
    task: Task
    checkpoint: str
    dtype: DType = "fp32"
    kernel_inject: KernelInject = "auto"
    allow_pickle: bool = False
    batching: BatchingSpec = field(default_factory=BatchingSpec)
    deployment: DeploymentSpec = field(default_factory=DeploymentSpec)
    embedding: EmbeddingSpec | None = None
    generation: GenerationSpec | None = None
    profile: bool = False  # write the step timeline (see ds_triton.profiling)

    def validate(self) -> None:
        """Raise ``SpecError`` naming the first inconsistent key (types are checked on reading)."""
        if not self.name or not self.name.replace("_", "").replace("-", "").isalnum():
            raise SpecError(f"name must be letters, digits, '_' or '-', got {self.name!r}")
        if not self.checkpoint:
            raise SpecError("checkpoint must name a local folder")
        self.batching.validate()
        self.deployment.validate()
        if self.deployment.tensor_parallel > 1 and self.task != "generation":
            raise SpecError(
                f"deployment.tensor_parallel is {self.deployment.tensor_parallel}, but only task "
                "'generation' is sharded; an embedding model runs one replica per device"
            )
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
        """The checkpoint folder as an absolute path (it may not exist).

        Raises:
            SpecError: a ``package:`` that is not installed, or a path outside the
                repository and every allowed root (see ``ds_triton.checkpoint_files``).
        """
        return resolve_checkpoint(self.checkpoint, version_dir).path

    # -- (de)serialisation ----------------------------------------------------

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        """Build and validate a spec; unknown keys and wrongly typed values are errors."""
        spec = build(cls, data)
        spec.validate()
        return spec

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict; task sections left at ``None`` are omitted."""
        data = dataclasses.asdict(self)
        return {k: v for k, v in data.items() if not (k in _TASK_SECTIONS and v is None)}

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


_TASK_SECTIONS = ("embedding", "generation")
