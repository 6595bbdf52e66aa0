"""What a candidate means for a model spec: the tunable keys of ``model.json`` and their values.

Embedding models: ``instances`` (``deployment.instances_per_device``),
``threads`` (``deployment.threads_per_instance``), ``max_batch_size``,
``preferred`` (``batching.preferred_batch_sizes`` as a rule relative to the
batch size) and ``max_queue_delay_us``. Generation models: ``instances``,
``threads``, ``max_concurrent_sequences``, ``max_batch_total_tokens`` and
``max_prefill_tokens``. GPU deployments have no ``threads``: an instance on a
GPU uses one host thread.

The default values span what is sensible on the machine (instances and
threads up to its cores, per GPU up to ``MAX_INSTANCES_PER_GPU``); the
model's current value of every key is always one of the values, so the
search starts exactly from the deployed settings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from ds_triton.spec import ModelSpec
from ds_triton_perf.tuning.space import Candidate, Dimension, Value

EMBEDDING_KEYS = ("instances", "threads", "max_batch_size", "preferred", "max_queue_delay_us")
GENERATION_KEYS = ("instances", "threads", "max_concurrent_sequences", "max_batch_total_tokens",
                   "max_prefill_tokens")
# Preferred batch sizes as a rule of the batch size, so they stay valid when it changes:
# "none" lets Triton form the largest batch it can, the others name the sizes it aims for.
PREFERRED_RULES: dict[str, int] = {"none": 0, "max": 1, "half": 2, "quarter": 4}
MAX_INSTANCES_PER_GPU = 4

DEFAULT_VALUES: dict[str, tuple[int | str, ...]] = {
    "max_batch_size": (8, 16, 32, 64),
    "preferred": tuple(PREFERRED_RULES),
    "max_queue_delay_us": (0, 500, 2000, 5000),
    "max_concurrent_sequences": (4, 8, 16, 32),
    "max_prefill_tokens": (64, 128, 256, 512),
}


def keys_of(spec: ModelSpec) -> tuple[str, ...]:
    keys = EMBEDDING_KEYS if spec.task == "embedding" else GENERATION_KEYS
    return tuple(k for k in keys if not (k == "threads" and spec.deployment.device == "gpu"))


def preferred_sizes(rule: str, max_batch_size: int) -> tuple[int, ...]:
    """The preferred batch sizes a rule gives (``"8,32"``: those sizes, whatever the batch size)."""
    if rule in PREFERRED_RULES:
        parts = PREFERRED_RULES[rule]
        sizes = {max(1, max_batch_size // 2**step) for step in range(parts.bit_length())} if parts else set()
        return tuple(sorted(sizes))
    return tuple(int(part) for part in rule.split(","))


def preferred_rule(sizes: Sequence[int], max_batch_size: int) -> str:
    """The rule that gives ``sizes`` (their own ``"a,b"`` form when no rule does)."""
    for rule in PREFERRED_RULES:
        if preferred_sizes(rule, max_batch_size) == tuple(sorted(sizes)):
            return rule
    return ",".join(str(s) for s in sorted(sizes))


def current(spec: ModelSpec, cores: int) -> dict[str, Value]:
    """The spec's own value of every tunable key (threads resolved as the instance would)."""
    deployment = spec.deployment
    threads = deployment.threads_per_instance or max(1, cores // deployment.instances_per_device)
    values: dict[str, Value] = {"instances": deployment.instances_per_device, "threads": threads}
    if spec.task == "embedding":
        batching = spec.batching
        values.update(max_batch_size=batching.max_batch_size,
                      preferred=preferred_rule(batching.preferred_batch_sizes, batching.max_batch_size),
                      max_queue_delay_us=batching.max_queue_delay_us)
    else:
        options = spec.generation_options
        values.update(max_concurrent_sequences=options.max_concurrent_sequences,
                      max_batch_total_tokens=options.max_batch_total_tokens,
                      max_prefill_tokens=options.max_prefill_tokens)
    return {k: values[k] for k in keys_of(spec)}


def default_dimensions(spec: ModelSpec, cores: int) -> tuple[Dimension, ...]:
    """Each tunable key with the values worth trying on this machine, the current one included."""
    now = current(spec, cores)
    on_gpu = spec.deployment.device == "gpu"
    ranges: dict[str, tuple[int | str, ...]] = dict(DEFAULT_VALUES)
    ranges["instances"] = tuple(range(1, MAX_INSTANCES_PER_GPU + 1)) if on_gpu else _powers_up_to(cores)
    ranges["threads"] = _powers_up_to(cores)
    if spec.task == "generation":
        options = spec.generation_options
        longest = options.max_prompt_tokens + options.max_tokens_limit
        ranges["max_batch_total_tokens"] = tuple(longest * k for k in (2, 4, 8, 16))
    dimensions = []
    for key in keys_of(spec):
        values: list[Value] = list(ranges[key])
        if now[key] not in values:
            values.append(now[key])
        dimensions.append(Dimension(key, tuple(_ordered(values))))
    return tuple(dimensions)


def apply(spec: ModelSpec, candidate: Candidate | Mapping[str, Value]) -> ModelSpec:
    """``spec`` with the candidate's settings (keys it does not name keep their value)."""
    values = candidate.as_dict() if isinstance(candidate, Candidate) else dict(candidate)
    deployment = spec.deployment
    if "instances" in values:
        deployment = dataclasses.replace(deployment, instances_per_device=_int(values["instances"]))
    if "threads" in values:
        deployment = dataclasses.replace(deployment, threads_per_instance=_int(values["threads"]))
    spec = dataclasses.replace(spec, deployment=deployment)
    if spec.task == "embedding":
        batching = spec.batching
        size = _int(values.get("max_batch_size", batching.max_batch_size))
        now = preferred_rule(batching.preferred_batch_sizes, batching.max_batch_size)
        rule = str(values.get("preferred", now))
        batching = dataclasses.replace(
            batching, max_batch_size=size, preferred_batch_sizes=preferred_sizes(rule, size),
            max_queue_delay_us=_int(values.get("max_queue_delay_us", batching.max_queue_delay_us)),
        )
        return dataclasses.replace(spec, batching=batching)
    options = spec.generation_options
    changed: dict[str, Any] = {k: _int(v) for k, v in values.items()
                               if k in ("max_concurrent_sequences", "max_batch_total_tokens",
                                        "max_prefill_tokens")}
    return dataclasses.replace(spec, generation=dataclasses.replace(options, **changed))


def parse_values(text: str) -> tuple[str, list[Value]]:
    """``--set max_batch_size=16,32`` → ``("max_batch_size", [16, 32])``; ``preferred=half`` stays text.

    Explicit preferred sizes are written with ``+``: ``preferred=8+32``.
    """
    name, sep, raw = text.partition("=")
    if not sep or not name or not raw:
        raise ValueError(f"--set takes NAME=V1,V2,..., got {text!r}")
    values: list[Value] = []
    for part in raw.split(","):
        part = part.strip()
        if name == "preferred":
            values.append(part.replace("+", ","))
        elif part.lstrip("-").isdigit():
            values.append(int(part))
        else:
            raise ValueError(f"--set {name}: {part!r} is not a whole number")
    return name, values


def _powers_up_to(limit: int) -> tuple[int, ...]:
    values = {1, limit}
    value = 2
    while value < limit:
        values.add(value)
        value *= 2
    return tuple(sorted(values))


def _ordered(values: list[Value]) -> list[Value]:
    numbers = sorted(v for v in values if isinstance(v, int))
    return numbers + [v for v in values if not isinstance(v, int)] if numbers else values


def _int(value: Value) -> int:
    if not isinstance(value, int):
        raise ValueError(f"expected a whole number, got {value!r}")
    return value
