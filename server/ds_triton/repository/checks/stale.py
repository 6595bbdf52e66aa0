"""Whether config.pbtxt is what model.json renders to (a stale render, or a hand edit)."""

from __future__ import annotations

from google.protobuf import text_format
from google.protobuf.descriptor import FieldDescriptor
from tritonclient.grpc import model_config_pb2 as mc

from ds_triton.repository.checks.interface import embedding_dimension
from ds_triton.repository.checks.subject import Subject
from ds_triton.repository.render import render_config


def check_render(model: Subject) -> None:
    """Compare the config with what model.json renders to, field by field."""
    assert model.config is not None and model.spec is not None
    config, spec = model.config, model.spec
    dimension = embedding_dimension(model) if spec.task == "embedding" else None
    if spec.task == "embedding" and dimension is None:
        return
    # For gpus "all" the config is right for whichever GPUs it was rendered for
    # (whether they exist here is the gpu check's business).
    gpu_ids = [g for group in config.instance_group for g in group.gpus]
    expected = render_config(spec, embedding_dimension=dimension, gpu_ids=gpu_ids)
    reported = model.reported_fields()  # each field's problem is reported once, at its cause
    for descriptor in mc.ModelConfig.DESCRIPTOR.fields:
        name = descriptor.name
        if name in reported:
            continue
        have, want = _field_text(config, descriptor), _field_text(expected, descriptor)
        if have != want:
            model.report(
                "stale",
                f"{name} differs from model.json's render: config.pbtxt has {have}, model.json "
                f"renders {want}; run `ds-triton render --model {model.name}` (or edit "
                "model.json)",
                field=name,
            )


def _field_text(config: mc.ModelConfig, descriptor: FieldDescriptor) -> str:
    """One field of ``config`` as one line of text format ("(unset)" if absent)."""
    part = mc.ModelConfig()
    part.CopyFrom(config)
    for other in mc.ModelConfig.DESCRIPTOR.fields:
        if other.name != descriptor.name:
            part.ClearField(other.name)
    text = text_format.MessageToString(part, as_one_line=True, use_short_repeated_primitives=True)
    return text.strip() or "(unset)"
