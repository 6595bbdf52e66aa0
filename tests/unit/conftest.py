"""Unit tests run without a server; the Triton adapter imports a stub ``pb_utils``."""

from __future__ import annotations

import sys

from tests.unit import fake_pb_utils

sys.modules.setdefault("triton_python_backend_utils", fake_pb_utils)
