"""Names and backend: Triton serves a model under its folder's name, on the Python backend."""

from __future__ import annotations

from ds_triton.repository.checks.subject import SPEC_FILE, Subject
from ds_triton.repository.render import BACKEND


def check_spec_name(model: Subject) -> None:
    assert model.spec is not None
    if model.spec.name != model.name:
        model.report(
            "name",
            f"name {model.spec.name!r} differs from its folder {model.name!r}; they must match",
            where=SPEC_FILE,
        )


def check_config_name(model: Subject) -> None:
    assert model.config is not None
    config = model.config
    if config.name and config.name != model.name:
        model.report(
            "name",
            f"name {config.name!r} differs from its folder {model.name!r}; Triton serves a "
            "model under its folder's name, so they must match",
            field="name",
        )


def check_backend(model: Subject) -> None:
    assert model.config is not None
    if model.config.backend != BACKEND:
        model.report(
            "layout",
            f"backend is {model.config.backend or '(unset)'!r}; models of this repository run on "
            f"{BACKEND!r} (the shared ds_triton model)",
            field="backend",
        )
