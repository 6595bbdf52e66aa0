"""vLLM-interface parity on a real tritonserver, checked against Hugging Face.

Two architectures: the shipped tiny Llama (WordPiece) and a Qwen2 with a
byte-level BPE tokenizer trained at test time (multi-byte characters span
tokens; ``tight_server``). For each: log-probabilities (``logprobs``, ``cumulative_logprob``,
``prompt_logprobs``) equal HF's ``log_softmax`` within 1e-4 and spell the text
they came with, streaming or not; every sampling key gives HF ``generate``'s
tokens for its counterpart, alone and in a running batch where every sequence
uses a different key. A copy of the Llama in ``processed_logprobs`` mode checks
the reported distribution against HF's own logits processors and warpers.
"""

from __future__ import annotations

import json
import queue
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import tritonclient.grpc as grpcclient

from ds_triton.generation.logits_processors import bad_word_token_ids
from ds_triton.server_process.tritonserver import TritonServer
from tests.conftest import MODEL_REPOSITORY
from tests.server.generation_client import BPE_MODEL, PROCESSED_MODEL, http_post

pytestmark = [pytest.mark.server, pytest.mark.slow]

SHIPPED = "text_generation"
SHIPPED_CHECKPOINT = MODEL_REPOSITORY / SHIPPED / "1" / "checkpoint"
PROMPT = "The quick brown fox jumps over"
TOLERANCE = 1e-4
FLAGS = ("return_logprobs", "return_cumulative_logprob", "return_num_output_tokens", "return_finish_reason")


# -- HF reference -------------------------------------------------------------------------


class Reference:
    """HF ``generate`` and forward passes on the served checkpoint, in this process."""

    def __init__(self, checkpoint: Path) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(checkpoint)
        self.model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32).eval()

    def ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text)["input_ids"])

    def generate(self, prompt: str, max_tokens: int, **kwargs: Any) -> tuple[list[int], torch.Tensor]:
        """Greedy (unless ``kwargs`` say otherwise) new tokens and the raw logits before each."""
        ids = torch.tensor([self.ids(prompt)])
        kwargs.setdefault("do_sample", False)
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_tokens,
                output_logits=True, return_dict_in_generate=True, **kwargs,
            )  # fmt: skip
        return out.sequences[0, ids.shape[1] :].tolist(), torch.stack(out.logits)[:, 0].float()

    def logits(self, ids: Sequence[int]) -> torch.Tensor:
        """Raw logits (len(ids), V): position i predicts token i + 1."""
        with torch.inference_mode():
            return self.model(input_ids=torch.tensor([list(ids)])).logits[0].float()

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        """The text ``ids`` add after ``PROMPT`` (decoded together, as a stream is)."""
        prompt = self.ids(PROMPT)
        whole = self.tokenizer.decode(prompt + list(ids), skip_special_tokens=skip_special_tokens)
        return str(whole)[len(self.tokenizer.decode(prompt, skip_special_tokens=skip_special_tokens)) :]


# -- serving ----------------------------------------------------------------------------


@dataclass
class Target:
    """A served model and its HF reference."""

    url: str
    model: str
    reference: Reference


@pytest.fixture(scope="module")
def llama() -> Reference:
    return Reference(SHIPPED_CHECKPOINT)


@pytest.fixture(params=["llama", "bpe"])
def target(request: pytest.FixtureRequest) -> Target:
    """The shipped model on the session's server, or the byte-level BPE Qwen2 on ``tight_server``."""
    if request.param == "llama":
        server: TritonServer = request.getfixturevalue("triton_server")
        return Target(server.grpc_url, SHIPPED, request.getfixturevalue("llama"))
    server = request.getfixturevalue("tight_server")
    checkpoint = server.options.model_repository / BPE_MODEL / "1" / "checkpoint"
    return Target(server.grpc_url, BPE_MODEL, Reference(checkpoint))


@dataclass
class Response:
    text: str
    outputs: dict[str, Any]

    @property
    def logprobs(self) -> list[dict[str, dict[str, Any]]]:
        value = self.outputs["logprobs"]
        assert isinstance(value, list)
        return value


@dataclass
class Result:
    responses: list[Response] = field(default_factory=list)
    error: str | None = None

    @property
    def text(self) -> str:
        return "".join(r.text for r in self.responses)

    @property
    def entries(self) -> list[dict[str, dict[str, Any]]]:
        return [e for r in self.responses for e in r.logprobs]

    @property
    def tokens(self) -> list[int]:
        """The chosen tokens: each entry's first key."""
        return [int(next(iter(e))) for e in self.entries]


def inputs(
    prompt: str, sampling: dict[str, Any], stream: bool = True, flags: Sequence[str] = FLAGS
) -> list[Any]:
    def tensor(name: str, value: Any, datatype: str) -> grpcclient.InferInput:
        item = grpcclient.InferInput(name, [1], datatype)
        item.set_data_from_numpy(np.array([value], dtype=bool if datatype == "BOOL" else object))
        return item

    result = [
        tensor("text_input", prompt.encode(), "BYTES"),
        tensor("stream", stream, "BOOL"),
        tensor("sampling_parameters", json.dumps(sampling).encode(), "BYTES"),
    ]
    return result + [tensor(flag, True, "BOOL") for flag in flags]


def generate(url: str, model: str, requests: Sequence[list[Any]], timeout: float = 120.0,
             errors: list[str] | None = None) -> list[Result]:
    """All ``requests`` at once on one gRPC stream (so they share a running batch).

    A stream's error carries no request id: with one request it is that request's
    ``error``; with several, pass ``errors`` to collect them (each ends one request).
    """
    events: queue.Queue[tuple[Any, Any]] = queue.Queue()
    results = [Result() for _ in requests]
    client = grpcclient.InferenceServerClient(url)
    client.start_stream(callback=lambda result, error: events.put((result, error)))
    try:
        for index, tensors in enumerate(requests):
            client.async_stream_infer(model, tensors, request_id=str(index), enable_empty_final_response=True)
        pending = len(requests)
        while pending:
            result, error = events.get(timeout=timeout)
            if error is not None:
                pending -= 1
                if errors is not None:
                    errors.append(str(error))
                else:
                    assert len(requests) == 1, error
                    results[0].error = str(error)
                continue
            response = result.get_response()
            target = results[int(response.id)]
            text = result.as_numpy("text_output")
            if text is not None:
                target.responses.append(Response(text[0].decode(), _outputs(result)))
            if response.parameters["triton_final_response"].bool_param:
                pending -= 1
    finally:
        client.stop_stream()
        client.close()
    return results


def _outputs(result: Any) -> dict[str, Any]:
    outputs: dict[str, Any] = {}
    for name in ("logprobs", "prompt_logprobs"):
        value = result.as_numpy(name)
        if value is not None:
            outputs[name] = json.loads(value[0].decode())
    for name in ("cumulative_logprob", "num_output_tokens"):
        value = result.as_numpy(name)
        if value is not None:
            outputs[name] = value.reshape(-1)[0].item()
    reason = result.as_numpy("finish_reason")
    if reason is not None:
        outputs["finish_reason"] = reason[0].decode()
    return outputs


def alone_and_batched(target: Target, requests: Sequence[list[Any]]) -> list[Result]:
    """Each request alone, then all together; the same result both ways (returned once)."""
    alone = [generate(target.url, target.model, [r])[0] for r in requests]
    batched = generate(target.url, target.model, requests)
    for one, together in zip(alone, batched, strict=True):
        assert one.error is None and together.error is None, (one.error, together.error)
        assert (one.text, one.tokens) == (together.text, together.tokens)
    return batched


# -- checks -------------------------------------------------------------------------------


def assert_consistent(result: Result, prefix: str = "") -> None:
    """vLLM's rules: one entry per token a response carries, the chosen entries spell its text,
    the cumulative log-probability is the running sum."""
    assert result.error is None, result.error
    total = 0.0
    for response in result.responses:
        entries = response.logprobs
        assert len(entries) == response.outputs["num_output_tokens"]
        chosen = [next(iter(e.values())) for e in entries]
        assert (prefix if response is result.responses[0] else "") + "".join(
            c["decoded_token"] for c in chosen
        ) == response.text
        total += sum(c["logprob"] for c in chosen)
        assert abs(response.outputs["cumulative_logprob"] - total) < TOLERANCE
        for entry in entries:
            ranks = sorted(v["rank"] for v in entry.values())
            assert 1 in ranks and all(set(v) == {"logprob", "rank", "decoded_token"} for v in entry.values())


def assert_logprobs_match(
    entries: Sequence[dict[str, dict[str, Any]]], logits: torch.Tensor, top: int
) -> None:
    """Each entry equals log_softmax of the reference logits at its position: chosen and top-N."""
    expected = torch.log_softmax(logits, dim=-1)
    assert len(entries) == len(expected)
    for entry, row in zip(entries, expected, strict=True):
        best = row.topk(top)
        listed = list(entry.items())
        chosen_id, chosen = listed[0]
        assert abs(chosen["logprob"] - float(row[int(chosen_id)])) < TOLERANCE
        assert chosen["rank"] == int((row >= row[int(chosen_id)]).sum())
        others = {int(k): v for k, v in entry.items()}
        assert set(best.indices.tolist()) <= set(others)
        pairs = zip(best.indices.tolist(), best.values.tolist(), strict=True)
        for rank, (token, value) in enumerate(pairs, start=1):
            assert others[token]["rank"] == rank and abs(others[token]["logprob"] - value) < TOLERANCE


# -- tests --------------------------------------------------------------------------------


def test_logprobs_match_hf_and_spell_the_text_streaming_or_not(target: Target) -> None:
    sampling = {"temperature": 0, "max_tokens": 12, "logprobs": 3, "ignore_eos": True}
    streamed, whole, excluded, unlisted, plain = generate(target.url, target.model, [
        inputs(PROMPT, sampling),
        inputs(PROMPT, sampling, stream=False),
        inputs(PROMPT, {**sampling, "max_tokens": 5}, stream=False) + _flag("exclude_input_in_output"),
        inputs(PROMPT, {"temperature": 0, "max_tokens": 3}),
        inputs(PROMPT, sampling, flags=()),
    ])  # fmt: skip
    tokens, logits = target.reference.generate(PROMPT, 12, min_new_tokens=12)
    for result in (streamed, whole):
        assert result.tokens == tokens
        assert_logprobs_match(result.entries, logits, 3)
    assert_consistent(streamed)
    assert len(whole.responses) == 1
    assert_consistent(whole, prefix=PROMPT)
    assert whole.text == PROMPT + streamed.text
    assert_consistent(excluded)
    assert excluded.tokens == tokens[:5]
    # return_logprobs without the logprobs key: "null", as the vLLM backend sends.
    assert all(r.outputs["logprobs"] is None for r in unlisted.responses)
    assert all("cumulative_logprob" in r.outputs for r in unlisted.responses)
    assert all("logprobs" not in r.outputs and "cumulative_logprob" not in r.outputs for r in plain.responses)


def _flag(name: str) -> list[Any]:
    item = grpcclient.InferInput(name, [1], "BOOL")
    item.set_data_from_numpy(np.array([True], dtype=bool))
    return [item]


def test_prompt_logprobs_come_with_the_first_response(target: Target) -> None:
    # The long prompt is prefilled in two chunks (128 tokens each by default); the BPE model
    # takes at most 64 prompt tokens, so it gets one of 60 in one chunk.
    long_prompt, length = PROMPT, 140 if target.model == SHIPPED else 60
    while len(target.reference.ids(long_prompt + " the lazy dog")) <= length:
        long_prompt += " the lazy dog"
    sampling = {"temperature": 0, "max_tokens": 3, "ignore_eos": True, "logprobs": 0}
    short, long, plain = generate(target.url, target.model, [
        inputs(PROMPT, {**sampling, "prompt_logprobs": 2}),
        inputs(long_prompt, {**sampling, "prompt_logprobs": 0}),
        inputs(long_prompt, sampling),
    ])  # fmt: skip
    for result, prompt, top in ((short, PROMPT, 2), (long, long_prompt, 0)):
        assert result.error is None
        first, *rest = result.responses
        assert all("prompt_logprobs" not in r.outputs for r in rest)
        scored = first.outputs["prompt_logprobs"]
        prompt_ids = target.reference.ids(prompt)
        assert scored[0] is None and len(scored) == len(prompt_ids)
        assert [int(next(iter(e))) for e in scored[1:]] == prompt_ids[1:]
        assert_logprobs_match(scored[1:], target.reference.logits(prompt_ids)[:-1], top)
    assert long.tokens == plain.tokens == target.reference.generate(long_prompt, 3, min_new_tokens=3)[0]
    assert all("prompt_logprobs" not in r.outputs for r in plain.responses)


class OpenAIPenalties:
    """presence/frequency penalties as OpenAI defines them (generated tokens only), for HF generate."""

    def __init__(self, prompt_length: int, presence: float, frequency: float) -> None:
        self.prompt_length, self.presence, self.frequency = prompt_length, presence, frequency

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        generated = input_ids[:, self.prompt_length :]
        ones = torch.ones_like(generated, dtype=scores.dtype)
        counts = torch.zeros_like(scores).scatter_add_(1, generated, ones)
        return scores - self.frequency * counts - self.presence * (counts > 0).to(scores.dtype)


@dataclass
class Case:
    """A sampling key, the HF ``generate`` arguments that mean the same, and the text HF gives."""

    name: str
    sampling: dict[str, Any]
    hf: dict[str, Any]
    text: Callable[[Reference, list[int]], str] | None = None


def key_cases(reference: Reference, greedy: list[int]) -> list[Case]:
    """One case per key, built from what plain greedy decoding produces on this model."""
    from transformers import LogitsProcessorList

    prompt_length = len(reference.ids(PROMPT))
    eos = reference.tokenizer.eos_token_id
    first, third = greedy[0], greedy[2]
    allowed = sorted({*greedy[3:8], 5, 7, 11})
    # A generated token that is a word of its own (not a byte of a longer character).
    word, bad = next(
        (text, ids) for text, ids in (
            (t, bad_word_token_ids([t], reference.tokenizer))
            for t in (reference.tokenizer.decode([token]).strip() for token in greedy) if t
        ) if any(i in ([token] for token in greedy) for i in ids)
    )  # fmt: skip
    stop_text = reference.decode(greedy[:6])[len(reference.decode(greedy[:4])) :]
    return [
        Case("repetition_penalty", {"repetition_penalty": 1.8}, {"repetition_penalty": 1.8}),
        Case("repetition_penalty < 1", {"repetition_penalty": 0.4}, {"repetition_penalty": 0.4}),
        Case(
            "presence and frequency penalties", {"presence_penalty": 1.5, "frequency_penalty": 0.7},
            {"logits_processor": LogitsProcessorList([OpenAIPenalties(prompt_length, 1.5, 0.7)])},
        ),
        Case(
            "presence and frequency rewards", {"presence_penalty": -2, "frequency_penalty": -1.5},
            {"logits_processor": LogitsProcessorList([OpenAIPenalties(prompt_length, -2, -1.5)])},
        ),
        Case("logit_bias", {"logit_bias": {str(first): -100, "11": 9.0}},
             {"sequence_bias": {(first,): -100.0, (11,): 9.0}}),
        Case("allowed_token_ids", {"allowed_token_ids": allowed},
             {"prefix_allowed_tokens_fn": lambda batch, ids: allowed}),
        Case("bad_words", {"bad_words": [word]}, {"bad_words_ids": bad}),
        Case("stop_token_ids", {"stop_token_ids": [third]}, {"eos_token_id": [eos, third]},
             lambda r, ids: r.decode(ids[:-1]) if ids[-1] == third else r.decode(ids)),
        Case("include_stop_str_in_output", {"stop_token_ids": [third], "include_stop_str_in_output": True},
             {"eos_token_id": [eos, third]}),
        Case("min_tokens with stop_token_ids", {"stop_token_ids": [first], "min_tokens": 4},
             {"eos_token_id": [eos, first], "min_new_tokens": 4},
             lambda r, ids: r.decode(ids[:-1]) if ids[-1] == first else r.decode(ids)),
        Case("min_p 1 keeps only the best token", {"temperature": 1.0, "min_p": 1.0, "seed": 3}, {}),
        Case("stop string included", {"stop": [stop_text], "include_stop_str_in_output": True},
             {"stop_strings": [stop_text], "tokenizer": reference.tokenizer},
             lambda r, ids: r.decode(ids)[: r.decode(ids).index(stop_text) + len(stop_text)]),
        Case(
            "skip_special_tokens false", {"logit_bias": {str(eos): 100}, "ignore_eos": True,
                                          "skip_special_tokens": False},
            {"sequence_bias": {(eos,): 100.0}, "eos_token_id": None},
            lambda r, ids: r.decode(ids, skip_special_tokens=False),
        ),
        Case(
            "spaces_between_special_tokens false",
            {"logit_bias": {str(eos): 100}, "ignore_eos": True, "skip_special_tokens": False,
             "spaces_between_special_tokens": False},
            {"sequence_bias": {(eos,): 100.0}, "eos_token_id": None},
            lambda r, ids: r.tokenizer.convert_ids_to_tokens(eos) * len(ids),
        ),
    ]  # fmt: skip


def test_each_sampling_key_matches_hf_alone_and_in_a_mixed_batch(target: Target) -> None:
    max_tokens = 10
    reference = target.reference
    greedy, _ = reference.generate(PROMPT, max_tokens, min_new_tokens=max_tokens)
    cases = key_cases(reference, greedy)
    base = {"temperature": 0, "max_tokens": max_tokens, "logprobs": 1}
    results = alone_and_batched(target, [inputs(PROMPT, {**base, **c.sampling}) for c in cases])
    for case, result in zip(cases, results, strict=True):
        expected, _ = reference.generate(PROMPT, max_tokens, **case.hf)
        assert result.tokens == expected, case.name
        text = case.text(reference, expected) if case.text else reference.decode(expected)
        assert result.text == text, case.name
        assert_consistent(result)
    # Every key changed the output somewhere, so each comparison above could have failed.
    changed = {c.name.split()[0] for c, r in zip(cases, results, strict=True) if r.tokens != greedy}
    assert {"repetition_penalty", "presence", "logit_bias", "allowed_token_ids", "bad_words"} <= changed


def test_processed_logprobs_are_hf_processors_and_warpers(
    llama: Reference, tight_server: TritonServer
) -> None:
    from transformers import (
        LogitsProcessorList,
        MinPLogitsWarper,
        RepetitionPenaltyLogitsProcessor,
        SequenceBiasLogitsProcessor,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    reference = llama
    cases = [
        ({"temperature": 0, "repetition_penalty": 1.4, "logit_bias": {"11": 4.0}},
         [SequenceBiasLogitsProcessor({(11,): 4.0}), RepetitionPenaltyLogitsProcessor(1.4)]),
        ({"temperature": 0.8, "top_k": 20, "min_p": 0.05, "repetition_penalty": 1.2, "seed": 7},
         [RepetitionPenaltyLogitsProcessor(1.2), TemperatureLogitsWarper(0.8), TopKLogitsWarper(20),
          MinPLogitsWarper(0.05)]),
        ({"temperature": 1.3, "top_p": 0.9, "seed": 8},
         [TemperatureLogitsWarper(1.3), TopPLogitsWarper(0.9)]),
    ]  # fmt: skip
    base = {"max_tokens": 8, "logprobs": 4, "ignore_eos": True}
    requests = [inputs(PROMPT, {**base, **sampling}) for sampling, _ in cases]
    results = generate(tight_server.grpc_url, PROCESSED_MODEL, requests)
    prompt = reference.ids(PROMPT)
    for (sampling, processors), result in zip(cases, results, strict=True):
        assert_consistent(result)
        ids = prompt + result.tokens
        raw = reference.logits(ids)[len(prompt) - 1 : -1]
        processed = []
        for position in range(len(result.tokens)):
            scores = raw[position].unsqueeze(0).clone()
            scores = LogitsProcessorList(processors)(torch.tensor([ids[: len(prompt) + position]]), scores)
            processed.append(scores[0])
        expected = torch.log_softmax(torch.stack(processed), dim=-1)
        for entry, row in zip(result.entries, expected, strict=True):
            for token, value in entry.items():
                want = float(row[int(token)])
                assert value["logprob"] == want or abs(value["logprob"] - want) < TOLERANCE, sampling


def test_min_p_samples_only_what_hf_min_p_keeps(target: Target) -> None:
    """min_p below 1 on both architectures: seeded sampling cannot replay HF's random draws, so
    each sampled token is checked against the set HF's ``MinPLogitsWarper`` keeps at its position
    (after temperature, as HF and vLLM order them); the same seeds without min_p leave that set."""
    from transformers import MinPLogitsWarper, TemperatureLogitsWarper

    temperature, min_p, seeds = 1.5, 0.2, range(4)
    base = {"temperature": temperature, "max_tokens": 24, "ignore_eos": True, "logprobs": 0}
    requests = [inputs(PROMPT, {**base, "seed": s, **extra})
                for extra in ({"min_p": min_p}, {}) for s in seeds]  # fmt: skip
    results = generate(target.url, target.model, requests)
    prompt = target.reference.ids(PROMPT)
    warpers = [TemperatureLogitsWarper(temperature), MinPLogitsWarper(min_p)]

    def dropped_by_hf(result: Result) -> int:
        assert result.error is None, result.error
        ids = prompt + result.tokens
        scores = target.reference.logits(ids)[len(prompt) - 1 : -1]
        for warper in warpers:
            scores = warper(torch.tensor([ids]), scores)
        return sum(bool(torch.isinf(scores[i, t])) for i, t in enumerate(result.tokens))

    with_min_p, without = results[: len(seeds)], results[len(seeds) :]
    assert [dropped_by_hf(r) for r in with_min_p] == [0] * len(seeds)
    assert sum(dropped_by_hf(r) for r in without) > 0  # so the check above could fail


# One bad value of each key (type, range, vocabulary, unsupported, unknown) and what its error says.
OUTSIDE = 10**7
BAD_SAMPLING: list[tuple[dict[str, Any], str]] = [
    ({"repetition_penalty": 0}, "sampling_parameters.repetition_penalty must be > 0"),
    ({"presence_penalty": 3}, "sampling_parameters.presence_penalty must be in [-2, 2]"),
    ({"frequency_penalty": -2.5}, "sampling_parameters.frequency_penalty must be in [-2, 2]"),
    ({"min_p": 1.5}, "sampling_parameters.min_p must be in [0, 1]"),
    ({"logit_bias": {"3": 500}}, "sampling_parameters.logit_bias must have values in [-100, 100]"),
    ({"logit_bias": {"x": 1}}, "sampling_parameters.logit_bias key must be an integer"),
    ({"logit_bias": {str(OUTSIDE): 1}}, "sampling_parameters.logit_bias has token id(s) outside"),
    ({"allowed_token_ids": []}, "sampling_parameters.allowed_token_ids must not be empty"),
    ({"allowed_token_ids": [OUTSIDE]}, "sampling_parameters.allowed_token_ids has token id(s) outside"),
    ({"bad_words": [3]}, "sampling_parameters.bad_words must be a string or a list of strings"),
    ({"min_tokens": 9, "max_tokens": 4},
     "sampling_parameters.min_tokens must be between 0 and max_tokens (4)"),
    ({"stop_token_ids": "5"}, "sampling_parameters.stop_token_ids must be a list of token ids"),
    ({"stop_token_ids": [OUTSIDE]}, "sampling_parameters.stop_token_ids has token id(s) outside"),
    ({"logprobs": 50}, "sampling_parameters.logprobs must be in [0, 20]"),
    ({"prompt_logprobs": -1}, "sampling_parameters.prompt_logprobs must be in [0, 20]"),
    ({"include_stop_str_in_output": "maybe"},
     "sampling_parameters.include_stop_str_in_output must be true or false"),
    ({"skip_special_tokens": 3}, "sampling_parameters.skip_special_tokens must be true or false"),
    ({"n": 2}, "sampling_parameters.n must be 1, got 2"),
    ({"best_of": 4}, "sampling_parameters.best_of must be 1, got 4"),
    ({"max_token": 3}, "sampling_parameters: unknown key(s) max_token"),
]  # fmt: skip
# Good requests sent among them, each with a new key; HF generate's counterpart gives their tokens.
GOOD_SAMPLING: list[tuple[dict[str, Any], dict[str, Any]]] = [
    ({}, {}),
    ({"repetition_penalty": 1.5, "logprobs": 2}, {"repetition_penalty": 1.5}),
    ({"logit_bias": {"11": 9.0}, "min_tokens": 4}, {"sequence_bias": {(11,): 9.0}, "min_new_tokens": 4}),
]


def test_each_bad_value_is_refused_by_name_over_grpc_while_good_requests_beside_it_succeed(
    triton_server: TritonServer, llama: Reference
) -> None:
    base = {"temperature": 0, "max_tokens": 6, "logprobs": 0}  # the chosen tokens come with their logprobs
    good = [inputs(PROMPT, {**base, **sampling}) for sampling, _ in GOOD_SAMPLING]
    bad = [inputs(PROMPT, {**base, **sampling}) for sampling, _ in BAD_SAMPLING]
    mixed = [r for pair in zip(bad, [*good * 7][: len(bad)], strict=True) for r in pair]
    errors: list[str] = []
    results = generate(triton_server.grpc_url, SHIPPED, mixed, errors=errors)
    assert len(errors) == len(BAD_SAMPLING)
    for _, message in BAD_SAMPLING:
        assert sum(message in e for e in errors) == 1, (message, errors)
    # Only the good ones answered, each with HF's tokens for its keys.
    answered = [r for r in results if r.responses]
    assert len(answered) == len(bad)
    for index, result in enumerate(answered):
        _, hf = GOOD_SAMPLING[index % len(GOOD_SAMPLING)]
        assert result.tokens == llama.generate(PROMPT, 6, **hf)[0], hf


def test_each_bad_value_is_refused_by_name_over_http_while_good_requests_beside_it_succeed(
    triton_server: TritonServer, llama: Reference
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def body(sampling: dict[str, Any]) -> tuple[dict[str, Any], str]:
        # Triton's generate endpoint takes only scalars in "parameters"; lists and objects
        # travel in the sampling_parameters input, as a JSON string.
        sampling = {"temperature": 0, "max_tokens": 6, **sampling}
        if any(isinstance(v, list | dict) for v in sampling.values()):
            return {"text_input": PROMPT, "exclude_input_in_output": True,
                    "sampling_parameters": json.dumps(sampling)}, "sampling_parameters"  # fmt: skip
        return {"text_input": PROMPT, "exclude_input_in_output": True, "parameters": sampling}, "parameters"

    sent = [body(sampling) for sampling, _ in [*BAD_SAMPLING, *GOOD_SAMPLING]]
    bodies = [b for b, _ in sent]
    # A request parameter that contradicts the sampling_parameters input is refused too.
    bodies.append({"text_input": PROMPT, "sampling_parameters": json.dumps({"max_tokens": 6}),
                   "parameters": {"max_tokens": 9}})  # fmt: skip
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda b: http_post(triton_server, "generate", b), bodies))
    # An unknown key is named where it was sent; a bad value by its sampling key.
    refusals = [m.replace("sampling_parameters:", f"{field}:")
                for (_, m), (_, field) in zip(BAD_SAMPLING, sent, strict=False)]  # fmt: skip
    refusals.append("parameters.max_tokens (9) conflicts with sampling_parameters.max_tokens (6)")
    for (status, text), message in zip(answers[: len(BAD_SAMPLING)] + answers[-1:], refusals, strict=True):
        assert status == 400 and message in json.loads(text)["error"], (message, text)
    for (status, text), (_, hf) in zip(answers[len(BAD_SAMPLING) : -1], GOOD_SAMPLING, strict=True):
        assert status == 200, text
        assert json.loads(text)["text_output"] == llama.decode(llama.generate(PROMPT, 6, **hf)[0])


def test_http_generate_returns_logprobs(triton_server: TritonServer, llama: Reference) -> None:
    body = {
        "text_input": PROMPT, "exclude_input_in_output": True, "return_logprobs": True,
        "return_cumulative_logprob": True,
        "parameters": {"temperature": 0, "max_tokens": 4, "logprobs": 2, "ignore_eos": True},
    }  # fmt: skip
    status, text = http_post(triton_server, "generate", body)
    assert status == 200, text
    payload = json.loads(text)
    entries = json.loads(payload["logprobs"])
    tokens, logits = llama.generate(PROMPT, 4, min_new_tokens=4)
    assert [int(next(iter(e))) for e in entries] == tokens
    assert_logprobs_match(entries, logits, 2)
    total = sum(next(iter(e.values()))["logprob"] for e in entries)
    assert abs(payload["cumulative_logprob"] - total) < TOLERANCE


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_the_client_package_returns_each_token_s_logprobs(
    triton_server: TritonServer, llama: Reference, scheme: str
) -> None:
    from ds_triton_client import Client

    url = f"{scheme}://{triton_server.http_url if scheme == 'http' else triton_server.grpc_url}"
    with Client(url, health_interval=0) as client:
        result = client.generate(
            PROMPT, model=SHIPPED, max_tokens=6, temperature=0, ignore_eos=True, logprobs=2,
            repetition_penalty=1.3, prompt_logprobs=1,
        )  # fmt: skip
    reference = llama
    tokens, logits = reference.generate(PROMPT, 6, min_new_tokens=6, repetition_penalty=1.3)
    assert result.logprobs is not None and result.prompt_logprobs is not None
    assert [e.token.token_id for e in result.logprobs] == tokens
    assert "".join(e.token.text for e in result.logprobs) == result.text == reference.decode(tokens)
    expected = torch.log_softmax(logits, dim=-1)
    for entry, row in zip(result.logprobs, expected, strict=True):
        assert abs(entry.token.logprob - float(row[entry.token.token_id])) < TOLERANCE
        assert [c.token_id for c in entry.listed][:2] == row.topk(2).indices.tolist()
    assert result.cumulative_logprob == pytest.approx(sum(e.token.logprob for e in result.logprobs), abs=1e-4)
    assert result.prompt_logprobs[0] is None and len(result.prompt_logprobs) == len(reference.ids(PROMPT))


def test_the_cli_prints_logprobs(triton_server: TritonServer, capsys: pytest.CaptureFixture[str]) -> None:
    from ds_triton_client.cli import main

    args = ["--url", f"grpc://{triton_server.grpc_url}", "generate", PROMPT, "--model", SHIPPED,
            "--max-tokens", "3", "--temperature", "0", "--ignore-eos", "--logprobs", "2"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.count("rank ") == 3 and "cumulative logprob:" in out
    assert main(["--json", *args]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert len(answer["logprobs"]) == 3 and all(len(e["listed"]) >= 2 for e in answer["logprobs"])
    assert answer["cumulative_logprob"] == pytest.approx(sum(e["logprob"] for e in answer["logprobs"]))
