"""The slot KV cache serves every causal-LM architecture the project supports, token for token.

Tiny random GPT-2 and OPT checkpoints are built at test time (the shipped model
is a Llama); each runs a staggered batch (sequences joining while others decode,
leaving at different lengths, a prompt prefilled in chunks) that must equal HF
``generate`` of each prompt alone. GPT-2 also runs with eager attention, whose
decode mask is additive rather than boolean.
"""

from __future__ import annotations

import pytest

from ds_triton.generation.model_runner import ModelRunner
from ds_triton.loading import LoadedModel
from tests.repository.tiny_checkpoints import make_gpt2, make_opt
from tests.unit.generation_support import (
    RecordingSink,
    greedy,
    hf_greedy,
    load_checkpoint,
    make_engine,
    run_until_idle,
)

PROMPTS = [
    "Hello",
    "The quick brown fox jumps over the lazy dog and keeps running far away",
    "a b",
    "walking towards the sunset",
]
LENGTHS = [14, 6, 20, 9]


@pytest.fixture(scope="module", params=["gpt2", "opt"])
def architecture(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    target = tmp_path_factory.mktemp(request.param)
    (make_gpt2 if request.param == "gpt2" else make_opt)(target)
    return load_checkpoint(target, name=request.param)


def staggered_batch_matches_hf(loaded: LoadedModel) -> None:
    engine = make_engine(loaded, max_prefill_tokens=8, max_prompt_tokens=64, max_tokens_limit=64)
    sinks = [RecordingSink() for _ in PROMPTS]
    for prompt, sink, length in zip(PROMPTS, sinks, LENGTHS, strict=True):
        engine.submit(greedy(prompt, length), sink)
        engine.step()  # the next request arrives while the others decode
    run_until_idle(engine)
    for prompt, sink, length in zip(PROMPTS, sinks, LENGTHS, strict=True):
        assert sink.text == hf_greedy(loaded, prompt, length)[0], prompt


def test_staggered_batches_match_hf_generate(architecture: LoadedModel) -> None:
    staggered_batch_matches_hf(architecture)


def test_eager_attention_takes_the_additive_decode_mask(architecture: LoadedModel) -> None:
    module = architecture.module
    if architecture.config.model_type != "gpt2":
        pytest.skip("one architecture is enough for the eager path")
    module.set_attn_implementation("eager")
    try:
        runner = ModelRunner(architecture.engine, module, "cpu", 0)
        assert runner._attention == "eager"
        staggered_batch_matches_hf(architecture)
    finally:
        module.set_attn_implementation("sdpa")
