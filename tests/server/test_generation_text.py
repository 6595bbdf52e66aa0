"""Streamed text of a byte-level BPE model (Qwen2) on a real server equals HF decode to the last byte.

A random model emits byte tokens that split multi-byte characters, and a stream
often ends inside one: the held-back bytes must come out as HF ``decode`` shows
them (U+FFFD), in the last response, not be dropped.
"""

from __future__ import annotations

import pytest

from ds_triton.server_process.tritonserver import TritonServer
from ds_triton.spec import ModelSpec
from tests.server.generation_client import BPE_MODEL, grpc_generate, hf_greedy_reference, vllm_inputs

pytestmark = pytest.mark.server

PROMPTS = ["hello world", "naïve café", "中文字符 テキスト", "emoji 😀"]


def test_byte_level_bpe_streams_equal_hf_decode_of_the_same_tokens(tight_server: TritonServer) -> None:
    version_dir = tight_server.options.model_repository / BPE_MODEL / "1"
    reference = hf_greedy_reference(ModelSpec.load(version_dir).resolve_checkpoint(version_dir))
    lengths = [40, 17, 33, 25]
    requests = [
        vllm_inputs(p, True, {"temperature": 0, "max_tokens": n, "ignore_eos": True}, counts=True)
        for p, n in zip(PROMPTS, lengths, strict=True)
    ]
    streams = grpc_generate(tight_server.grpc_url, requests, model=BPE_MODEL)
    split = 0
    for prompt, length, stream in zip(PROMPTS, lengths, streams, strict=True):
        assert stream.error is None and stream.tokens == length
        expected, _ = reference(prompt, length)
        assert stream.text == expected, prompt
        split += expected.count("\ufffd")
    assert split, "no stream split a character: the test would not show the held-back bytes"
