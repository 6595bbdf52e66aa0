"""Which candidates this machine can run: the repository's own checks, then memory.

A candidate is rendered exactly as ``ds-triton render`` would and held to the
checks ``ds-triton check`` runs (cores, GPUs, the queue policy, every spec
rule), so the tuner never proposes a configuration the checker refuses. Then
memory: what one instance of the model holds is measured on the server (the
resident memory of the starting configuration's stubs, divided by their
number), a generation model's KV-cache rows are added by their size, and the
model's instances together must fit in the memory that was available before
the tuner started its server, less a margin.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from ds_triton.errors import SpecError
from ds_triton.repository.checkpoint import CheckpointInfo, inspect_checkpoint
from ds_triton.repository.checks.registry import run_checks
from ds_triton.repository.checks.subject import Subject
from ds_triton.repository.layout import ModelFolder
from ds_triton.repository.machine import Machine
from ds_triton.repository.render import render_config
from ds_triton.spec import ModelSpec
from ds_triton_perf.tuning.settings import apply
from ds_triton_perf.tuning.space import Candidate, Constraint

MB = 1024 * 1024
MEMORY_HEADROOM = 0.8  # share of the available memory the model's instances may take
DTYPE_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}


@dataclass(frozen=True)
class MemoryBudget:
    """Host memory for the model's instances and what each costs.

    Attributes:
        available_bytes: What the instances may hold together (available memory × headroom).
        per_instance_bytes: One instance without its KV cache (measured).
        kv_row_bytes: One KV-cache row of a generation model (0 for embeddings).
    """

    available_bytes: int
    per_instance_bytes: int
    kv_row_bytes: int = 0

    def need(self, spec: ModelSpec, gpus: int) -> int:
        instances = spec.deployment.instances_per_device * (max(1, gpus) if spec.deployment.device == "gpu"
                                                            else 1)
        rows = spec.generation_options.max_concurrent_sequences if spec.task == "generation" else 0
        return instances * (self.per_instance_bytes + rows * self.kv_row_bytes)

    def why_not(self, spec: ModelSpec, gpus: int) -> str | None:
        need = self.need(spec, gpus)
        if need <= self.available_bytes:
            return None
        return (f"needs about {need / MB:.0f} MB of memory, {self.available_bytes / MB:.0f} MB available "
                f"({self.per_instance_bytes / MB:.0f} MB per instance measured)")

    @classmethod
    def measured(cls, available_bytes: int, instances_rss_bytes: int, spec: ModelSpec, gpus: int,
                 kv_row_bytes: int = 0) -> MemoryBudget:
        """From the resident memory of ``spec``'s instances as loaded on the server."""
        instances = spec.deployment.instances_per_device * (max(1, gpus) if spec.deployment.device == "gpu"
                                                            else 1)
        rows = spec.generation_options.max_concurrent_sequences if spec.task == "generation" else 0
        base = max(0, instances_rss_bytes // max(1, instances) - rows * kv_row_bytes)
        return cls(int(available_bytes * MEMORY_HEADROOM), base, kv_row_bytes)


def available_memory(meminfo: Path = Path("/proc/meminfo")) -> int:
    """``MemAvailable`` in bytes (what can be allocated without swapping)."""
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{meminfo} has no MemAvailable line")


def kv_row_bytes(spec: ModelSpec, checkpoint: Path) -> int:
    """Bytes of one KV-cache row of a generation model (the engine's slot cache, see its README)."""
    if spec.task != "generation":
        return 0
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(checkpoint, local_files_only=True, trust_remote_code=False)
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    heads = int(text.num_attention_heads)
    kv_heads = int(getattr(text, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(text, "head_dim", None) or text.hidden_size // heads)
    options = spec.generation_options
    positions = options.max_prompt_tokens + options.max_tokens_limit
    context = getattr(text, "max_position_embeddings", None)
    if isinstance(context, int) and context > 0:
        positions = min(positions, context)
    return positions * int(text.num_hidden_layers) * 2 * kv_heads * head_dim * DTYPE_BYTES[spec.dtype]


def candidate_constraint(base: ModelSpec, folder: ModelFolder, machine: Machine,
                         memory: MemoryBudget | None) -> Constraint:
    """Why a candidate cannot run here (a check's message or the memory it needs), else ``None``."""
    info = inspect_checkpoint(base, folder.version_dir)
    gpus = len(machine.gpu_ids)

    @functools.cache
    def why_not(candidate: Candidate) -> str | None:
        try:
            spec = apply(base, candidate)
            spec.validate()
        except (SpecError, ValueError) as exc:
            return str(exc)
        problems = checked(spec, folder, machine, info)
        if problems:
            return problems[0]
        return memory.why_not(spec, gpus) if memory is not None else None

    return why_not


def checked(spec: ModelSpec, folder: ModelFolder, machine: Machine, info: CheckpointInfo) -> list[str]:
    """``ds-triton check``'s problems with ``spec`` as rendered for ``machine`` (files not read)."""
    subject = Subject(folder, machine, on_disk=False, spec=spec, checkpoint=info)
    subject.done.add("checkpoint")  # the checkpoint is the base spec's, inspected once
    dimension = info.hidden_size if spec.task == "embedding" else None
    subject.config = render_config(spec, embedding_dimension=dimension, gpu_ids=machine.gpu_ids)
    run_checks(subject)
    return [f"[{p.kind}] {p.message}" for p in subject.problems]
