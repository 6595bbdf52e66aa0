"""Scenario files (``perf/scenarios/<model>.yaml``) read into typed objects.

A scenario file describes, per model, which text mixes to use, the
perf_analyzer sweeps, the load-generator sweeps (and which systems they
drive) and the in-process ceiling. Unknown keys are rejected with the key
named, so a typo never silently drops a sweep.

Open-loop rates may be absolute (``20``) or a share of the best closed-loop
throughput measured earlier in the same run for the same system (``"50%"``).

Any other top-level key must be the key of a scenario kind
(:mod:`ds_triton_perf.kinds`); its block is parsed into that kind's config.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import yaml

SCENARIO_DIR = Path(__file__).resolve().parents[1] / "scenarios"
Rate = float | str


class ScenarioError(ValueError):
    """A scenario file is malformed; the message names the file and key."""


@dataclass(frozen=True)
class PerfAnalyzerScenario:
    """One perf_analyzer sweep (one invocation per value in ``sweep``)."""

    name: str
    mode: Literal["concurrency", "request_rate"]
    sweep: list[Rate]
    quick_sweep: list[Rate] = field(default_factory=list)
    protocol: Literal["http", "grpc"] = "grpc"
    batch_sizes: list[int] = field(default_factory=lambda: [1])
    texts: str = "mixed"
    distribution: Literal["poisson", "constant"] = "poisson"
    streaming: bool = False
    measurement_ms: int = 3000
    quick_measurement_ms: int = 1500


@dataclass(frozen=True)
class LoadgenScenario:
    """One load-generator sweep, run against every system in ``systems``."""

    name: str
    mode: Literal["closed", "open"]
    sweep: list[Rate]
    quick_sweep: list[Rate] = field(default_factory=list)
    systems: list[str] = field(default_factory=lambda: ["triton"])
    texts: str = "mixed"
    distribution: Literal["poisson", "constant"] = "poisson"
    duration_s: float = 6.0
    quick_duration_s: float = 2.0
    warmup_s: float = 1.0
    protocol: Literal["http", "grpc"] = "grpc"


@dataclass(frozen=True)
class CeilingScenario:
    """The in-process forward loop (no server) at several batch sizes."""

    batch_sizes: list[int] = field(default_factory=lambda: [1, 8, 16, 32, 64])
    quick_batch_sizes: list[int] = field(default_factory=lambda: [1, 16])
    duration_s: float = 4.0
    quick_duration_s: float = 1.5
    texts: list[str] = field(default_factory=lambda: ["uniform", "mixed"])


@dataclass(frozen=True)
class GenerationLoad:
    """Requests for a generation model: prompt mix, output lengths, the static baseline.

    Request ``i`` is prompt ``i`` of the mix with ``max_tokens[i % len(max_tokens)]``; the
    load generator, perf_analyzer and the static-batch baseline all use the same list.
    ``static_batch_size`` 0 skips the static-batch baseline (``--only`` without ``static_batches``).
    """

    prompts: str = "mixed"
    max_tokens: list[int] = field(default_factory=lambda: [16, 32, 64])
    requests: int = 64
    quick_requests: int = 16
    static_batch_size: int = 16


@dataclass(frozen=True)
class GenaiPerfScenario:
    """genai-perf profiles of a streaming model, one per concurrency in ``sweep``."""

    name: str
    sweep: list[int]
    quick_sweep: list[int] = field(default_factory=list)
    input_tokens_mean: int = 32
    output_tokens_mean: int = 32
    num_prompts: int = 32
    measurement_ms: int = 3000
    quick_measurement_ms: int = 1500


@dataclass(frozen=True)
class ModelScenarios:
    """Everything measured for one model."""

    model: str
    task: Literal["embedding", "generation"]
    texts: dict[str, dict[str, float]]
    perf_analyzer: list[PerfAnalyzerScenario] = field(default_factory=list)
    loadgen: list[LoadgenScenario] = field(default_factory=list)
    ceiling: CeilingScenario | None = None
    generation: GenerationLoad = field(default_factory=GenerationLoad)
    genai_perf: list[GenaiPerfScenario] = field(default_factory=list)
    extra: dict[str, list[Any]] = field(default_factory=dict)
    source: Path | None = None

    def text_weights(self, name: str) -> dict[str, float]:
        if name not in self.texts:
            raise ScenarioError(f"{self.source}: text mix {name!r} is not defined under 'texts'")
        return self.texts[name]

    def generation_requests(self, quick: bool) -> list[tuple[str, int]]:
        """``(prompt, max_tokens)`` pairs: prompt ``i`` of the mix with ``max_tokens[i % k]``."""
        from ds_triton_perf.texts import text_mix

        load = self.generation
        count = load.quick_requests if quick else load.requests
        prompts = text_mix(self.text_weights(load.prompts), count=count, seed=1)
        return [(p, load.max_tokens[i % len(load.max_tokens)]) for i, p in enumerate(prompts)]


def load_scenarios(path: Path) -> ModelScenarios:
    """Parse and check one scenario file."""
    raw = yaml.safe_load(path.read_text())
    if not isinstance(raw, dict):
        raise ScenarioError(f"{path}: expected a mapping at the top level")
    where = str(path)
    from ds_triton_perf.kinds import registry

    kinds = registry()
    _reject_unknown({k: v for k, v in raw.items() if k not in kinds}, ModelScenarios, where,
                    skip={"source", "extra"}, also=sorted(kinds))
    try:
        scenarios = ModelScenarios(
            model=raw["model"],
            task=raw["task"],
            texts={k: dict(v) for k, v in raw.get("texts", {}).items()},
            perf_analyzer=[_build(PerfAnalyzerScenario, item, f"{where}:perf_analyzer")
                           for item in raw.get("perf_analyzer", [])],
            loadgen=[_build(LoadgenScenario, item, f"{where}:loadgen") for item in raw.get("loadgen", [])],
            ceiling=(_build(CeilingScenario, raw["ceiling"], f"{where}:ceiling")
                     if raw.get("ceiling") else None),
            generation=_build(GenerationLoad, raw.get("generation", {}), f"{where}:generation"),
            genai_perf=[_build(GenaiPerfScenario, item, f"{where}:genai_perf")
                        for item in raw.get("genai_perf", [])],
            extra={key: [_build(kinds[key].config, item, f"{where}:{key}") for item in _items(raw[key])]
                   for key in kinds if raw.get(key)},
            source=path,
        )
    except KeyError as exc:
        raise ScenarioError(f"{where}: missing key {exc.args[0]!r}") from None
    for key in scenarios.extra:
        if scenarios.task not in kinds[key].tasks:
            raise ScenarioError(f"{where}: {key!r} applies to {kinds[key].tasks} models, "
                                f"not {scenarios.task!r}")
    names = [s.texts for s in scenarios.perf_analyzer] + [s.texts for s in scenarios.loadgen]
    names += [item.texts for items in scenarios.extra.values() for item in items
              if isinstance(getattr(item, "texts", None), str) and item.texts]
    if scenarios.task == "generation":
        names.append(scenarios.generation.prompts)
    for name in names:
        scenarios.text_weights(name)
    return scenarios


def default_scenarios(directory: Path = SCENARIO_DIR) -> list[ModelScenarios]:
    """Every ``*.yaml`` scenario file in ``directory``, sorted by name."""
    return [load_scenarios(p) for p in sorted(directory.glob("*.yaml"))]


def resolve_rate(value: Rate, best_rps: float | None) -> float:
    """``20`` → 20.0; ``"50%"`` → half of ``best_rps`` (which must then be known)."""
    if isinstance(value, str) and value.endswith("%"):
        if not best_rps:
            raise ScenarioError(
                f"rate {value!r} is relative, but no closed-loop throughput was measured"
            )
        return max(0.1, float(value[:-1]) / 100.0 * best_rps)
    return float(value)


def _build(cls: Any, raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise ScenarioError(f"{where}: expected a mapping, got {raw!r}")
    _reject_unknown(raw, cls, where)
    try:
        return cls(**raw)
    except TypeError as exc:
        raise ScenarioError(f"{where}: {exc}") from None


def _items(block: Any) -> list[Any]:
    return block if isinstance(block, list) else [block]


def _reject_unknown(raw: dict[str, Any], cls: Any, where: str, skip: set[str] | None = None,
                    also: list[str] | None = None) -> None:
    known = {f.name for f in fields(cls)} - (skip or set())
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ScenarioError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(known) + (also or [])}")
