"""The request mix a tune run measures with: the scenario texts by default, or the user's JSONL.

Defaults come from the model's scenario file (``perf/scenarios/<model>.yaml``,
or the shipped file of the same task for a model that has none): an
embedding model gets single-text requests of a named text mix, a generation
model the scenario's prompts with their ``max_tokens``. A JSONL file gives
one request per line instead:

* embedding: ``{"text": "..."}`` or ``{"texts": ["...", "..."]}``;
* generation: ``{"prompt": "...", "max_tokens": 64}`` (``max_tokens`` optional).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ds_triton_perf.scenarios import SCENARIO_DIR, ModelScenarios, load_scenarios
from ds_triton_perf.texts import text_mix

SHIPPED_SCENARIOS = {"embedding": "text_embedding.yaml", "generation": "text_generation.yaml"}
SCENARIO_REQUESTS = 256


class WorkloadError(ValueError):
    """The request file or the named mix is unusable; the message says where."""


@dataclass(frozen=True)
class Workload:
    """Requests to cycle through: lists of texts (embedding) or ``(prompt, max_tokens)`` pairs.

    Attributes:
        description: Where the requests come from, for the report.
        texts: Embedding requests, each a list of texts.
        prompts: Generation requests.
    """

    description: str
    texts: tuple[tuple[str, ...], ...] = ()
    prompts: tuple[tuple[str, int], ...] = ()

    @property
    def size(self) -> int:
        return len(self.texts) or len(self.prompts)

    def to_dict(self) -> dict[str, Any]:
        items = sum(len(t) for t in self.texts)
        return {"description": self.description, "requests": self.size,
                **({"texts": items} if self.texts else {}),
                **({"max_tokens_mean": round(sum(t for _, t in self.prompts) / len(self.prompts), 1)}
                   if self.prompts else {})}


def scenario_file(model: str, task: str, directory: Path = SCENARIO_DIR) -> Path:
    own = directory / f"{model}.yaml"
    return own if own.is_file() else directory / SHIPPED_SCENARIOS[task]


def from_scenario(scenarios: ModelScenarios, task: str, mix: str | None, request_batch: int = 1) -> Workload:
    """The scenario file's requests: text mix ``mix`` (default: ``mixed``, else the first)."""
    where = scenarios.source or "scenario file"
    if task == "generation":
        pairs = scenarios.generation_requests(quick=False)
        if mix is not None:
            prompts = text_mix(scenarios.text_weights(mix), count=len(pairs), seed=1)
            pairs = [(p, tokens) for p, (_, tokens) in zip(prompts, pairs, strict=True)]
        return Workload(f"{where}: {len(pairs)} prompts of mix "
                        f"'{mix or scenarios.generation.prompts}', max_tokens "
                        f"{sorted(set(scenarios.generation.max_tokens))}", prompts=tuple(pairs))
    if request_batch < 1:
        raise WorkloadError(f"--request-batch must be >= 1, got {request_batch}")
    name = mix or ("mixed" if "mixed" in scenarios.texts else next(iter(scenarios.texts)))
    texts = text_mix(scenarios.text_weights(name), count=SCENARIO_REQUESTS, seed=0)
    requests = tuple(tuple(texts[(i + j) % len(texts)] for j in range(request_batch))
                     for i in range(0, len(texts), request_batch))
    return Workload(f"{where}: text mix '{name}', {request_batch} text(s) per request", texts=requests)


def from_jsonl(path: Path, task: str, default_max_tokens: int = 16) -> Workload:
    """One request per line of ``path`` (see the module docstring for the keys)."""
    texts: list[tuple[str, ...]] = []
    prompts: list[tuple[str, int]] = []
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise WorkloadError(f"{path}: {exc.strerror}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise WorkloadError(f"{where}: not JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise WorkloadError(f"{where}: expected an object, got {type(row).__name__}")
        if task == "embedding":
            texts.append(_texts(row, where))
        else:
            prompts.append(_prompt(row, where, default_max_tokens))
    if not texts and not prompts:
        raise WorkloadError(f"{path}: no requests")
    return Workload(f"{path} ({len(texts) or len(prompts)} requests)", tuple(texts), tuple(prompts))


def load_workload(model: str, task: str, requests: Path | None, mix: str | None, request_batch: int,
                  default_max_tokens: int, scenario_dir: Path = SCENARIO_DIR) -> Workload:
    if requests is not None:
        return from_jsonl(requests, task, default_max_tokens)
    scenarios = load_scenarios(scenario_file(model, task, scenario_dir))
    if mix is not None and mix not in scenarios.texts:
        raise WorkloadError(f"text mix {mix!r} is not in {scenarios.source} "
                            f"(it has {sorted(scenarios.texts)})")
    return from_scenario(scenarios, task, mix, request_batch)


def _texts(row: dict[str, Any], where: str) -> tuple[str, ...]:
    unknown = sorted(set(row) - {"text", "texts"})
    if unknown or ("text" in row) == ("texts" in row):
        raise WorkloadError(f"{where}: an embedding request is {{\"text\": ...}} or {{\"texts\": [...]}}"
                            + (f" (unknown keys {unknown})" if unknown else ""))
    value = [row["text"]] if "text" in row else row["texts"]
    if not isinstance(value, list) or not value or not all(isinstance(t, str) and t.strip() for t in value):
        raise WorkloadError(f"{where}: texts must be non-empty strings")
    return tuple(value)


def _prompt(row: dict[str, Any], where: str, default_max_tokens: int) -> tuple[str, int]:
    unknown = sorted(set(row) - {"prompt", "max_tokens"})
    if unknown:
        raise WorkloadError(f"{where}: unknown keys {unknown}; "
                            "a generation request has prompt and max_tokens")
    prompt, tokens = row.get("prompt"), row.get("max_tokens", default_max_tokens)
    if not isinstance(prompt, str) or not prompt.strip():
        raise WorkloadError(f"{where}: prompt must be a non-empty string")
    if not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 1:
        raise WorkloadError(f"{where}: max_tokens must be a whole number >= 1, got {tokens!r}")
    return prompt, tokens
