"""Helpers of the engine tests: a recording sink, an engine over a loaded model, HF references."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ds_triton.devices import Placement
from ds_triton.generation.engine import GenerationEngine
from ds_triton.generation.metrics import CountingMetrics, GenerationMetrics
from ds_triton.generation.model_runner import ModelRunner
from ds_triton.generation.params import SamplingParams
from ds_triton.generation.request import GenerationRequest
from ds_triton.generation.sequence import GenerationOutput
from ds_triton.loading import LoadedModel, load_model
from ds_triton.profiling import StepTimeline
from ds_triton.spec import GenerationSpec, ModelSpec

VERSION_DIR = Path(__file__).resolve().parents[2] / "model_repository/text_generation/1"


def load_shipped_model() -> LoadedModel | None:
    """The shipped tiny Llama through DeepSpeed, or None when ``make setup`` has not built it."""
    spec = ModelSpec.load(VERSION_DIR)
    if not spec.resolve_checkpoint(VERSION_DIR).is_dir():
        return None
    return load_model(spec, VERSION_DIR, Placement("cpu", 1))


def load_checkpoint(checkpoint: Path, name: str = "tiny") -> LoadedModel:
    """Any causal-LM checkpoint folder, loaded the way the server loads it."""
    spec = ModelSpec.from_dict({"name": name, "task": "generation", "checkpoint": str(checkpoint)})
    return load_model(spec, checkpoint, Placement("cpu", 1))


@dataclass
class RecordingSink:
    cancelled: bool = False
    outputs: list[GenerationOutput] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)

    def is_cancelled(self) -> bool:
        return self.cancelled

    def send(self, output: GenerationOutput) -> None:
        self.outputs.append(output)

    def fail(self, error: BaseException) -> None:
        self.errors.append(error)

    @property
    def text(self) -> str:
        return "".join(o.text for o in self.outputs)

    @property
    def finished(self) -> bool:
        return bool(self.outputs and self.outputs[-1].final) or bool(self.errors)


def make_engine(
    loaded: LoadedModel,
    metrics: GenerationMetrics | None = None,
    timeline: StepTimeline | None = None,
    **options: int,
) -> GenerationEngine:
    tokenizer = loaded.tokenizer
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    runner = ModelRunner(loaded.engine, loaded.module, "cpu", pad)
    return GenerationEngine(
        runner,
        tokenizer,
        GenerationSpec(**options),
        max_positions=loaded.config.max_position_embeddings,
        eos_token_id=tokenizer.eos_token_id,
        metrics=metrics or CountingMetrics(),
        timeline=timeline,
    )


def greedy(prompt: str, max_tokens: int, stream: bool = True, **extra: Any) -> GenerationRequest:
    params = SamplingParams(max_tokens=max_tokens, temperature=0.0, **extra)
    return GenerationRequest(prompt, params, stream=stream, exclude_input_in_output=stream)


def run_until_idle(engine: GenerationEngine, limit: int = 2000) -> None:
    for _ in range(limit):
        if engine.in_flight == 0:
            return
        engine.step()
    raise AssertionError("engine did not finish within the step limit")


def wait_for(condition: Callable[[], bool], seconds: float = 60.0) -> None:
    """Poll ``condition`` (generous bound: the machine is shared, this is not a speed test)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.005)


def hf_greedy(loaded: LoadedModel, prompt: str, max_tokens: int) -> tuple[str, int]:
    """HF ``generate``'s continuation of ``prompt``: its text as it continues the prompt's
    text (a first WordPiece "##" token glues onto the prompt's last word), and its length."""
    tokenizer = loaded.tokenizer
    inputs = tokenizer(prompt, return_tensors="pt")
    with torch.inference_mode():
        out = loaded.module.generate(**inputs, max_new_tokens=max_tokens, do_sample=False)
    full = tokenizer.decode(out[0].tolist(), skip_special_tokens=True)
    prompt_text = tokenizer.decode(inputs["input_ids"][0].tolist(), skip_special_tokens=True)
    return full[len(prompt_text) :], out.shape[1] - inputs["input_ids"].shape[1]
