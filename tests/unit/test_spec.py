"""ModelSpec: loading, validation messages that name the key, round trip."""

from __future__ import annotations

import dataclasses
import json
import re
import types
import typing
from pathlib import Path
from typing import Any

import pytest

from ds_triton.errors import SpecError
from ds_triton.spec import BatchingSpec, DeploymentSpec, EmbeddingSpec, GenerationSpec, ModelSpec

ROOT = Path(__file__).resolve().parents[2]


def minimal(**overrides: Any) -> dict[str, Any]:
    return {"name": "m", "task": "embedding", "checkpoint": "/ckpt", **overrides}


def test_shipped_embedding_spec_loads_and_resolves_packaged_weights() -> None:
    version_dir = ROOT / "model_repository" / "text_embedding" / "1"
    spec = ModelSpec.load(version_dir)
    assert spec.task == "embedding"
    assert (spec.resolve_checkpoint(version_dir) / "model.safetensors").is_file()


def test_round_trip_through_json() -> None:
    spec = ModelSpec.from_dict(minimal(batching={"max_batch_size": 8, "preferred_batch_sizes": [4, 8]}))
    assert ModelSpec.from_dict(json.loads(spec.dumps())) == spec


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (minimal(task="translation"), "task must be one of"),
        (minimal(dtype="int8"), "dtype must be one of"),
        (minimal(colour="red"), "unknown key(s): colour"),
        (minimal(batching={"max_batch_size": 0}), "max_batch_size must be >= 1"),
        (minimal(batching={"max_batch_size": 8, "preferred_batch_sizes": [16]}), "preferred_batch_sizes"),
        (minimal(batching={"max_batch": 8}), "unknown key(s) in 'batching': max_batch"),
        (minimal(deployment={"instances_per_device": 0}), "instances_per_device"),
        (minimal(deployment={"gpus": [-1]}), "deployment.gpus"),
        (minimal(embedding={"pooling": "max"}), "embedding.pooling"),
        (minimal(embedding={"max_length": 512, "max_tokens_per_forward": 256}), "max_tokens_per_forward"),
        (minimal(generation={}), "takes no 'generation' options"),
        (minimal(name="bad name!"), "name must be"),
        (minimal(checkpoint=""), "checkpoint must name"),
    ],
)
def test_invalid_specs_name_the_problem(data: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ModelSpec.from_dict(data)


def test_relative_checkpoint_resolves_against_version_folder(tmp_path: Path) -> None:
    spec = ModelSpec.from_dict(minimal(checkpoint="weights"))
    assert spec.resolve_checkpoint(tmp_path) == (tmp_path / "weights").resolve()


def test_missing_package_is_reported(tmp_path: Path) -> None:
    spec = ModelSpec.from_dict(minimal(checkpoint="package:no_such_package_xyz/model"))
    with pytest.raises(SpecError, match="no_such_package_xyz"):
        spec.resolve_checkpoint(tmp_path)


def test_load_reports_invalid_json(tmp_path: Path) -> None:
    (tmp_path / "model.json").write_text("{not json")
    with pytest.raises(SpecError, match="invalid JSON"):
        ModelSpec.load(tmp_path)


# -- types: declared once on the dataclasses, checked when model.json is read ------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (minimal(batching={"max_batch_size": "64"}),
         'batching.max_batch_size must be an integer, got "64" (a string)'),
        (minimal(batching={"max_batch_size": True}),
         "batching.max_batch_size must be an integer, got true (a boolean)"),
        (minimal(embedding={"truncate": "false"}),
         'embedding.truncate must be true or false, got "false" (a string)'),
        (minimal(embedding={"normalize": 1}),
         "embedding.normalize must be true or false, got 1 (an integer)"),
        (minimal(embedding={"max_length": 1.5}),
         "embedding.max_length must be an integer or null, got 1.5 (a number)"),
        (minimal(deployment={"gpus": "some"}),
         'deployment.gpus must be "all" or a list of integers, got "some" (a string)'),
        (minimal(deployment={"gpus": [0, "1"]}), 'deployment.gpus[1] must be an integer, got "1" (a string)'),
        (minimal(batching={"preferred_batch_sizes": 16}),
         "batching.preferred_batch_sizes must be a list of integers, got 16 (an integer)"),
        (minimal(batching=[]), "batching must be an object, got a list"),
        (minimal(dtype=16), 'dtype must be one of ["fp32", "fp16", "bf16"], got 16 (an integer)'),
        (minimal(allow_pickle="yes"), 'allow_pickle must be true or false, got "yes" (a string)'),
        (minimal(checkpoint=None), "checkpoint must be a string, got null"),
        ({"task": "embedding", "checkpoint": "/x"}, "missing key(s): name"),
    ],
)
def test_a_wrongly_typed_value_names_the_key_and_the_type(data: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as raised:
        ModelSpec.from_dict(data)
    assert str(raised.value) == message


SECTIONS = {"": ModelSpec, "batching": BatchingSpec, "deployment": DeploymentSpec,
            "embedding": EmbeddingSpec, "generation": GenerationSpec}


def keys_of_type(wanted: type) -> list[tuple[str, str]]:
    """(section, key) of every spec key whose declared type admits ``wanted`` (and is not a str)."""
    found = []
    for section, cls in SECTIONS.items():
        for name, annotation in typing.get_type_hints(cls).items():
            options = typing.get_args(annotation) if typing.get_origin(annotation) in (
                typing.Union, types.UnionType) else (annotation,)
            if wanted in options:
                found.append((section, name))
    return found


def spec_with(section: str, key: str, value: Any) -> dict[str, Any]:
    task = "generation" if section == "generation" else "embedding"
    if not section:
        return {**minimal(task=task), key: value}
    return {**minimal(task=task), section: {key: value}}


@pytest.mark.parametrize(("section", "key"), keys_of_type(bool), ids=lambda v: v or "top")
@pytest.mark.parametrize("value", ["false", "true", 0, 1, None])
def test_every_boolean_key_takes_only_json_booleans(section: str, key: str, value: Any) -> None:
    dotted = f"{section}.{key}" if section else key
    with pytest.raises(SpecError, match=rf"^{re.escape(dotted)} must be true or false, got "):
        ModelSpec.from_dict(spec_with(section, key, value))
    for good in (True, False):
        assert ModelSpec.from_dict(spec_with(section, key, good))


@pytest.mark.parametrize(("section", "key"), keys_of_type(int), ids=lambda v: v or "top")
def test_every_integer_key_refuses_a_string_and_names_itself(section: str, key: str) -> None:
    dotted = f"{section}.{key}" if section else key
    expected = rf"^{re.escape(dotted)} must be an integer.*, got \"64\" \(a string\)$"
    with pytest.raises(SpecError, match=expected):
        ModelSpec.from_dict(spec_with(section, key, "64"))


def test_a_spec_holding_every_key_round_trips() -> None:
    data = minimal(
        dtype="bf16", kernel_inject="off", allow_pickle=True, profile=True,
        batching={"max_batch_size": 8, "preferred_batch_sizes": [8], "max_queue_delay_us": 100,
                  "latency_budget_ms": 20, "max_queue_size": 5, "queue_timeout_us": 900,
                  "allow_timeout_override": False},
        deployment={"device": "gpu", "gpus": [1, 0], "instances_per_device": 2, "threads_per_instance": 3},
        embedding={"pooling": "cls", "normalize": False, "max_length": 64, "truncate": False,
                   "length_bucketing": False},
    )
    spec = ModelSpec.from_dict(data)
    assert spec.deployment.gpus == (1, 0) and spec.embedding_options.truncate is False
    dumped = json.loads(spec.dumps())
    for key, value in data.items():  # every value given comes back as given (new keys at defaults)
        assert dumped[key] == value if not isinstance(value, dict) else value.items() <= dumped[key].items()
    assert ModelSpec.from_dict(json.loads(spec.dumps())) == spec


@pytest.mark.parametrize(("section", "cls"), [(k, v) for k, v in SECTIONS.items() if k], ids=str)
def test_sections_built_in_code_are_held_to_their_minimums(section: str, cls: type) -> None:
    for f in dataclasses.fields(cls):
        minimum = f.metadata.get("minimum")
        if minimum is None or f.type not in ("int", "int | None"):
            continue
        expected = rf"^{section}\.{f.name} must be >= {minimum}, got {minimum - 1}$"
        with pytest.raises(SpecError, match=expected):
            cls(**{f.name: minimum - 1}).validate()
