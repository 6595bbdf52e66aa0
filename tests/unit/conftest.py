"""Unit tests run without a server; the Triton adapter imports a stub ``pb_utils``."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from tests.unit import fake_pb_utils

sys.modules.setdefault("triton_python_backend_utils", fake_pb_utils)


@pytest.fixture(scope="session")
def loaded() -> Any:
    """The shipped tiny generation model (a ``LoadedModel``), loaded once for every engine test."""
    from tests.unit.generation_support import load_shipped_model

    model = load_shipped_model()
    if model is None:
        pytest.skip("run `make setup` to create the tiny checkpoint")
    return model
