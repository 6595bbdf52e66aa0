"""Which allocator setting gives an embedding instance's memory back after a burst of long texts.

Each setting runs in a fresh process that does what one ``text_embedding``
instance does (the shipped MiniLM, one intra-op thread, the shipped embedding
options): load, then a burst of maximum-length batches (64 texts over the
256-token limit, i.e. four forwards of 16 x 256 under ``max_tokens_per_forward``
4096), then idle, then mixed traffic (1-8 texts of 1-300 words), then idle.
It prints RSS after load, the peak above it, RSS right after the burst and after
the idle pause, and where the memory is by glibc's count (in use, free
chunks, mmapped chunks) and the kernel's (anonymous vs file-backed).

    .venv/bin/python perf/repro/heap_after_burst.py [--bursts 3] [--mixed 200] [--only glibc,shipped]

Settings: ``glibc`` (default allocator), ``arena_max_2`` (``MALLOC_ARENA_MAX=2``),
``trim`` (``malloc_trim(0)`` when idle), ``mmap_1mb`` (a fixed 1 MB mmap
threshold), ``shipped`` (both: what ``backend/embedding.py`` does), and, when
the libraries are installed (apt ``libjemalloc2``, ``libtcmalloc-minimal4``),
``jemalloc``, ``jemalloc_decay_1s`` and ``tcmalloc`` through ``LD_PRELOAD``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
VERSION_DIR = ROOT / "model_repository" / "text_embedding" / "1"
LIB = Path("/usr/lib/x86_64-linux-gnu")
JEMALLOC = LIB / "libjemalloc.so.2"
TCMALLOC = LIB / "libtcmalloc_minimal.so.4"
JEMALLOC_DECAY_1S = "background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0"
MMAP_THRESHOLD = 1 << 20
SETTLE_S = 3.0
WORDS = ["the", "model", "serves", "a", "long", "document", "about", "rivers", "search", "queries"]

# name -> (environment, trim when idle, fixed mmap threshold, library that must exist)
SETTINGS: dict[str, tuple[dict[str, str], bool, bool, Path | None]] = {
    "glibc": ({}, False, False, None),
    "arena_max_2": ({"MALLOC_ARENA_MAX": "2"}, False, False, None),
    "trim": ({}, True, False, None),
    "mmap_1mb": ({}, False, True, None),
    "shipped": ({}, True, True, None),
    "jemalloc": ({"LD_PRELOAD": str(JEMALLOC)}, False, False, JEMALLOC),
    "jemalloc_decay_1s": (
        {"LD_PRELOAD": str(JEMALLOC), "MALLOC_CONF": JEMALLOC_DECAY_1S},
        False,
        False,
        JEMALLOC,
    ),
    "tcmalloc": ({"LD_PRELOAD": str(TCMALLOC)}, False, False, TCMALLOC),
}


def text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def child(name: str, bursts: int, mixed: int) -> dict[str, object]:
    """One instance's life under ``name``; returns its figures (MB, ms)."""
    from ds_triton import heap
    from ds_triton.devices import Placement
    from ds_triton.embedding.encoder import TextEncoder
    from ds_triton.loading import load_model
    from ds_triton.spec import ModelSpec

    _, trims, fixed_threshold, _ = SETTINGS[name]
    if fixed_threshold:
        heap.fix_mmap_threshold(MMAP_THRESHOLD)
    spec = ModelSpec.load(VERSION_DIR)
    loaded = load_model(spec, VERSION_DIR, Placement("cpu", 1))
    encoder = TextEncoder(loaded, spec.embedding_options)
    params = sum(p.numel() * p.element_size() for p in loaded.module.parameters()) / heap.MB

    def settle() -> heap.MemoryBreakdown:
        time.sleep(SETTLE_S)
        if trims:
            heap.trim()
        return heap.breakdown()

    rng = random.Random(0)
    post_load = heap.breakdown()
    started = time.perf_counter()
    for _ in range(bursts):
        encoder.encode([text(rng, 300) for _ in range(64)])
    burst_ms = (time.perf_counter() - started) * 1000 / bursts
    after_burst = heap.breakdown()
    after_idle = settle()
    for _ in range(mixed):
        encoder.encode([text(rng, rng.randint(1, 300)) for _ in range(rng.randint(1, 8))])
    after_mixed = settle()
    return {
        "setting": name,
        "params_mb": round(params, 1),
        "post_load": post_load.to_dict(),
        "peak_above_load": round(after_mixed.peak_rss - post_load.rss, 1),
        "burst_ms": round(burst_ms),
        "after_burst": after_burst.to_dict(),
        "after_idle": after_idle.to_dict(),
        "after_mixed_idle": after_mixed.to_dict(),
    }


def run(name: str, bursts: int, mixed: int) -> dict[str, Any]:
    env = {**os.environ, **SETTINGS[name][0], "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'server'}"}
    argv = [sys.executable, __file__, "--child", name, "--bursts", str(bursts), "--mixed", str(mixed)]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def row(result: dict[str, Any]) -> str:
    """One table row: RSS after load, then changes relative to it (MB)."""
    load = result["post_load"]["rss"]
    burst = result["after_burst"]
    glibc = "LD_PRELOAD" not in SETTINGS[result["setting"]][0]
    held = f"{burst['malloc_in_use']:.0f} / {burst['malloc_free']:.0f} / {burst['malloc_mmapped']:.0f}"
    cells = [
        result["setting"],
        f"{load:.0f}",
        f"{result['peak_above_load']:+.0f}",
        *(f"{result[key]['rss'] - load:+.0f}" for key in ("after_burst", "after_idle", "after_mixed_idle")),
        held if glibc else "-",
        str(result["burst_ms"]),
    ]
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bursts", type=int, default=3, help="maximum-length batches of 64 in the burst")
    parser.add_argument("--mixed", type=int, default=200, help="mixed batches after the burst")
    parser.add_argument("--only", default="", help="comma-separated settings (default: every one available)")
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.bursts, args.mixed)))
        return
    names = [n for n in (args.only.split(",") if args.only else SETTINGS) if n]
    print(f"load average {os.getloadavg()[0]:.1f}; RSS in MB, changes relative to RSS after load")
    print(
        "| setting | RSS after load | peak | right after burst | after 3 s idle | after mixed + 3 s idle "
        "| glibc after burst: in use / free chunks / mmapped | burst ms per batch |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name in names:
        library = SETTINGS[name][3]
        if library is not None and not library.exists():
            print(f"| {name} | not installed ({library.name}) |")
            continue
        result = run(name, args.bursts, args.mixed)
        print(row(result), flush=True)
        print(json.dumps(result), file=sys.stderr)


if __name__ == "__main__":
    main()
