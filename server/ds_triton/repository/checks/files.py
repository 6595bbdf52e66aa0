"""The files of a model folder: the shared shim, and reading config.pbtxt and model.json."""

from __future__ import annotations

from ds_triton.errors import SpecError
from ds_triton.repository.checks.subject import SPEC_FILE, Subject
from ds_triton.repository.layout import CONFIG_FILENAME, SHIM_SOURCE
from ds_triton.repository.schema import ConfigSchemaError, read_config
from ds_triton.spec import ModelSpec


def check_shim(model: Subject) -> None:
    shim = model.folder.shim_path
    if not shim.is_file():
        model.report(
            "layout", "missing; it must be the shared three-line shim (`ds-triton render` writes it)",
            where="1/model.py",
        )
    elif shim.read_text() != SHIM_SOURCE:
        model.report(
            "layout",
            "is not the shared shim; every model runs the shared ds_triton TritonPythonModel "
            "(model-specific options belong in model.json)",
            where="1/model.py",
        )


def read_config_file(model: Subject) -> None:
    path = model.folder.config_path
    if not path.is_file():
        model.report("layout", "missing; run `ds-triton render` to write it from model.json")
        return
    try:
        model.config = read_config(path)
    except ConfigSchemaError as exc:
        where = f"{CONFIG_FILENAME}:{exc.line}:{exc.column}"
        model.report("schema", f"not a valid Triton ModelConfig: {exc}", where=where)


def read_spec_file(model: Subject) -> None:
    if not model.folder.spec_path.is_file():
        model.report("layout", "missing; every model folder is rendered from its spec", where=SPEC_FILE)
        return
    try:
        model.spec = ModelSpec.load(model.folder.spec_path)
    except SpecError as exc:
        model.report("spec", str(exc), where=SPEC_FILE)
