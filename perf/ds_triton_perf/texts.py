"""Deterministic text mixes (short/medium/long) for BYTES inputs.

Realistic lengths matter for an embedding server: padding to the longest
text of a batch is where a mixed workload loses throughput. Texts are built
from a fixed word list with a seeded RNG, so every system in a run, and every
run, sees exactly the same inputs.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from pathlib import Path

# Word counts per length class (inclusive ranges); "long" stays under a 256-token limit and
# "max" goes past it (the embedding model truncates; the soak sends inputs up to the limits).
LENGTHS: dict[str, tuple[int, int]] = {"short": (4, 12), "medium": (30, 60), "long": (120, 180),
                                       "max": (260, 320)}

_VOCABULARY = (
    "the a of to and in is for on with as by at from that this it be are was model server "
    "request batch latency throughput queue token text embedding vector search query user "
    "document product review customer support order delivery price quality service time "
    "network memory compute kernel thread core cache storage record field value result "
    "report chart metric error retry timeout deploy release version update config option "
    "fast slow large small new old first last good better best simple clear short long "
    "weather travel music movie book recipe coffee garden city river mountain ocean forest "
    "runs returns sends reads writes finds keeps shows makes takes gives holds moves starts"
)
_WORDS = _VOCABULARY.split()


def make_text(rng: random.Random, length: str) -> str:
    """One sentence-like text of the named length class."""
    if length not in LENGTHS:
        raise ValueError(f"unknown text length {length!r}; expected one of {sorted(LENGTHS)}")
    low, high = LENGTHS[length]
    words = [rng.choice(_WORDS) for _ in range(rng.randint(low, high))]
    sentences, start = [], 0
    while start < len(words):
        end = min(len(words), start + rng.randint(6, 16))
        sentence = " ".join(words[start:end])
        sentences.append(sentence[0].upper() + sentence[1:] + ".")
        start = end
    return " ".join(sentences)


def random_words(count: int, seed: int = 0) -> list[str]:
    """``count`` words of the fixed vocabulary (for prompts of a chosen token length)."""
    rng = random.Random(seed)
    return [rng.choice(_WORDS) for _ in range(count)]


def text_mix(weights: Mapping[str, float], count: int = 256, seed: int = 0) -> list[str]:
    """``count`` texts whose length classes follow ``weights`` (e.g. ``{"short": 0.5, ...}``)."""
    if not weights or any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
        raise ValueError(f"text mix weights must be non-negative with a positive sum: {dict(weights)}")
    rng = random.Random(seed)
    classes = rng.choices(list(weights), weights=list(weights.values()), k=count)
    return [make_text(rng, length) for length in classes]


def write_input_data(texts: list[str], path: Path, input_name: str = "text") -> Path:
    """perf_analyzer ``--input-data`` JSON: one entry per text for a ``[1]``-shaped BYTES input."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"data": [{input_name: [text]} for text in texts]}))
    return path
