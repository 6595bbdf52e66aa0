"""The few Triton HTTP calls the serve process makes itself: readiness and the repository API.

Each call opens and closes its own connection: while tritonserver shuts down it
waits for every open HTTP connection to close (``HTTPServer::Stop``), so the
serve process must never hold one.
"""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any


class TritonApiError(RuntimeError):
    """A repository call failed; the message is Triton's."""


@dataclass(frozen=True)
class ModelState:
    """One row of Triton's repository index."""

    name: str
    state: str  # READY, LOADING, UNLOADING, UNAVAILABLE
    reason: str = ""


@dataclass(frozen=True)
class TritonApi:
    """HTTP calls to one tritonserver; ``headers`` carry the admin key when one is set."""

    address: str  # host:port of the HTTP endpoint
    headers: tuple[tuple[str, str], ...] = ()
    timeout: float = 5.0

    def ready(self, model: str | None = None) -> bool:
        path = f"/v2/models/{model}/ready" if model else "/v2/health/ready"
        try:
            self._call("GET", path, timeout=2.0)
        except (TritonApiError, OSError):
            return False
        return True

    def index(self) -> dict[str, ModelState]:
        """Every model the repository holds, by name (the newest version's row)."""
        rows = self._call("POST", "/v2/repository/index", b"{}")
        found: dict[str, ModelState] = {}
        for row in rows or []:
            found[row["name"]] = ModelState(row["name"], row.get("state", ""), row.get("reason", ""))
        return found

    def config(self, model: str) -> dict[str, Any]:
        """The model's configuration as Triton runs it (a restricted API: needs the admin key)."""
        return dict(self._call("GET", f"/v2/models/{model}/config"))

    def load(self, model: str, timeout: float = 600.0) -> None:
        """Load (or reload, if its files changed) ``model``; returns once it is READY."""
        self._call("POST", f"/v2/repository/models/{model}/load", b"{}", timeout=timeout)

    def unload(self, model: str) -> None:
        """Start unloading ``model``: it stops being ready at once; in-flight requests finish."""
        self._call("POST", f"/v2/repository/models/{model}/unload", b"{}")

    def _call(self, method: str, path: str, body: bytes | None = None, timeout: float | None = None) -> Any:
        request = urllib.request.Request(
            f"http://{self.address}{path}",
            data=body,
            method=method,
            headers={"Connection": "close", **dict(self.headers)},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout or self.timeout) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            with contextlib.suppress(ValueError):
                detail = json.loads(detail).get("error", detail)
            raise TritonApiError(f"{method} {path}: HTTP {exc.code}: {detail}") from None
        return json.loads(payload) if payload else None
