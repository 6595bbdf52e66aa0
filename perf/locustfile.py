"""Locust load test for teams that already use Locust, built on ``ds_triton_client``.

    .venv/bin/locust -f perf/locustfile.py --host http://127.0.0.1:8000 \\
        --headless -u 16 -r 4 -t 1m

``--host`` is the Triton HTTP endpoint (several, comma-separated, are balanced
by the client). Users:

* ``EmbeddingUser`` embeds ``DS_TRITON_BATCH`` texts (default 1) per request from
  the ``DS_TRITON_TEXT_MIX`` mix (``uniform`` | ``mixed``, default ``mixed``).
* ``StreamingUser`` streams a generation (``DS_TRITON_MAX_TOKENS``, default 32)
  and reports two entries: the whole stream and its time to first token.

Pick users with Locust's class selection (``locust ... EmbeddingUser``). Locust
is closed-loop; for open-loop latency without coordinated omission use
``ds-triton-perf bench``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from locust import User, between, task

from ds_triton_client.client import Client
from ds_triton_perf.texts import text_mix

MIXES = {"uniform": {"medium": 1.0}, "mixed": {"short": 0.5, "medium": 0.35, "long": 0.15}}
TEXTS = text_mix(MIXES[os.environ.get("DS_TRITON_TEXT_MIX", "mixed")], count=256)
BATCH = int(os.environ.get("DS_TRITON_BATCH", "1"))
MAX_TOKENS = int(os.environ.get("DS_TRITON_MAX_TOKENS", "32"))
EMBED_MODEL = os.environ.get("DS_TRITON_EMBED_MODEL", "text_embedding")
GENERATE_MODEL = os.environ.get("DS_TRITON_GENERATE_MODEL", "text_generation")


class _ClientUser(User):
    """A Locust user holding one ``ds_triton_client.Client`` (HTTP, no retries: errors show)."""

    abstract = True
    wait_time = between(0.0, 0.01)

    def on_start(self) -> None:
        self.client = Client(self.host or "http://127.0.0.1:8000", max_attempts=1, health_interval=0)
        self._position = 0

    def on_stop(self) -> None:
        self.client.close()

    def _record(self, kind: str, name: str, call: Callable[[], int]) -> None:
        """Time ``call`` and report it to Locust as one request of ``name``."""
        start = time.perf_counter()
        length, error = 0, None
        try:
            length = call()
        except Exception as exc:  # Locust shows failures grouped by exception
            error = exc
        self.environment.events.request.fire(
            request_type=kind, name=name, response_time=(time.perf_counter() - start) * 1000.0,
            response_length=length, exception=error, context={},
        )

    def _next_texts(self, count: int) -> list[str]:
        texts = [TEXTS[(self._position + i) % len(TEXTS)] for i in range(count)]
        self._position = (self._position + count) % len(TEXTS)
        return texts


class EmbeddingUser(_ClientUser):
    weight = 3

    @task
    def embed(self) -> None:
        texts = self._next_texts(BATCH)
        self._record("embed", f"{EMBED_MODEL} x{BATCH}",
                     lambda: int(self.client.embed(texts, model=EMBED_MODEL).shape[0]))


class StreamingUser(_ClientUser):
    weight = 1

    @task
    def stream(self) -> None:
        prompt = self._next_texts(1)[0]
        start = time.perf_counter()
        first: list[float] = []

        def run() -> int:
            pieces = 0
            for _ in self.client.stream(prompt, model=GENERATE_MODEL, temperature=0,
                                        max_tokens=MAX_TOKENS, ignore_eos=True):
                if not first:
                    first.append(time.perf_counter())
                pieces += 1
            return pieces

        self._record("stream", f"{GENERATE_MODEL} stream", run)
        if first:
            self.environment.events.request.fire(
                request_type="ttft", name=f"{GENERATE_MODEL} first token",
                response_time=(first[0] - start) * 1000.0, response_length=0, exception=None,
                context={},
            )


__all__ = ["EmbeddingUser", "StreamingUser"]
