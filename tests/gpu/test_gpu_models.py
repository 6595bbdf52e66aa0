"""The CUDA path, on a real GPU: placement, fp16/bf16, kernel injection, tolerances vs HF fp32.

Marked ``gpu``: skipped on a machine without one, and under
``scripts/gpu_check.sh`` (``DS_TRITON_REQUIRE_GPU=1``) a missing GPU fails the
run instead. Every comparison is against Hugging Face fp32 on the same GPU.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from ds_triton.backend.context import InstanceContext
from ds_triton.errors import ModelLoadError
from ds_triton.loading import load_model
from ds_triton.tensor_parallel.devices import NotEnoughGpus
from ds_triton.tensor_parallel.leader import start_tensor_parallel
from scripts.gpu import precision

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def device() -> str:
    import torch

    if not torch.cuda.is_available():  # the GPU node exists but torch cannot use it: fail, not skip
        raise AssertionError("torch.cuda.is_available() is False on a machine with /dev/nvidia0")
    return f"cuda:{torch.cuda.device_count() - 1}"  # the last GPU: placement must follow Triton's id


@pytest.fixture(scope="module")
def hf_fp32_embeddings(device: str) -> np.ndarray:
    return precision.embed(precision.hf_embedding_model(device, "fp32"))


def test_kind_gpu_instance_loads_on_the_gpu_triton_names(device: str) -> None:
    index = int(device.split(":")[1])
    args = {
        "model_config": json.dumps({"instance_group": [{"kind": "KIND_GPU", "count": 1, "gpus": [index]}]}),
        "model_repository": str(precision.EMBEDDING_DIR.parent),
        "model_version": "1",
        "model_name": "text_embedding",
        "model_instance_kind": "GPU",
        "model_instance_device_id": str(index),
    }
    context = InstanceContext.from_args(args)
    assert context.placement.device == device
    loaded = load_model(context.spec, context.version_dir, context.placement)
    devices = {str(p.device) for p in loaded.module.parameters()}
    assert devices == {device}


@pytest.mark.parametrize("kernel_inject", ["off", "on"])
@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
def test_minilm_embeddings_match_hf_fp32(
    device: str, hf_fp32_embeddings: np.ndarray, dtype: str, kernel_inject: str
) -> None:
    loaded = precision.ds_embedding_model(device, dtype, kernel_inject)
    assert loaded.kernel_inject is (kernel_inject == "on")
    if kernel_inject == "on":
        assert precision.injected_layers(loaded) > 0, "kernel_inject 'on' loaded without DeepSpeed layers"
    diff = precision.max_abs_diff(precision.embed(loaded), hf_fp32_embeddings)
    assert diff <= precision.EMBEDDING_MAX_ABS[dtype], f"{dtype}, injection {kernel_inject}: max-abs {diff}"


def test_auto_injects_on_cuda(device: str) -> None:
    loaded = precision.ds_embedding_model(device, "fp16", "auto")
    assert loaded.kernel_inject and precision.injected_layers(loaded) > 0


@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
def test_generation_greedy_tokens_agree_with_hf_fp32(device: str, dtype: str) -> None:
    module, tokenizer = precision.hf_generation_model(device, "fp32")
    reference = precision.hf_greedy_tokens(module, tokenizer)
    del module
    loaded = precision.ds_generation_model(device, dtype)
    got = precision.served_runner_greedy_tokens(loaded)
    share = precision.agreement(reference, got)
    assert share >= precision.GREEDY_AGREEMENT, f"{dtype}: {share:.1%} of greedy tokens agree"


def test_generation_refuses_kernel_injection_on(device: str) -> None:
    spec = precision.spec_for(precision.GENERATION_DIR, dtype="fp16", kernel_inject="on", device=device)
    with pytest.raises(ModelLoadError, match="kernel_inject 'on'"):
        load_model(spec, precision.GENERATION_DIR, precision.placement(device))


def test_tensor_parallel_above_the_visible_gpus_is_refused_at_load(device: str) -> None:
    import dataclasses

    import torch

    base = precision.generation_spec(device, "fp16")
    too_many = torch.cuda.device_count() + 1
    deployment = dataclasses.replace(base.deployment, tensor_parallel=too_many)
    spec = dataclasses.replace(base, deployment=deployment)
    with pytest.raises(NotEnoughGpus, match=f"tensor_parallel is {too_many}"):
        start_tensor_parallel(spec, precision.GENERATION_DIR)


