"""The step timeline: where it goes, what a record holds, and that it is off by default."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ds_triton.profiling import (
    KEYS,
    PROFILE_DIR_ENV,
    StepTimeline,
    open_timeline,
    profile_directory,
    timeline_path,
)


def test_off_unless_the_env_var_or_the_spec_asks(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(PROFILE_DIR_ENV, raising=False)
    assert open_timeline("m", "m_0", profile=False) is None
    assert profile_directory(True, {}) is not None
    assert profile_directory(False, {PROFILE_DIR_ENV: str(tmp_path)}) == tmp_path
    assert profile_directory(True, {PROFILE_DIR_ENV: str(tmp_path)}) == tmp_path


def test_records_are_json_lines_with_the_contract_keys(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(PROFILE_DIR_ENV, str(tmp_path / "profiles"))
    timeline = open_timeline("text_generation", "text_generation_0_0")
    assert timeline is not None
    timeline.record("prefill", rows=2, tokens=24, ended=10.0, forward_seconds=0.004, queue_depth=3)
    # 10 ms after the previous step ended, of which 2 ms in the forward: an 8 ms gap.
    timeline.record("decode", rows=2, tokens=2, ended=10.010, forward_seconds=0.002)
    timeline.close()
    timeline.close()  # idempotent
    path = timeline_path("text_generation", "text_generation_0_0", tmp_path / "profiles")
    first, second = (json.loads(line) for line in path.read_text().splitlines())
    assert tuple(first) == KEYS
    assert (first["phase"], first["rows"], first["tokens"], first["queue_depth"]) == ("prefill", 2, 24, 3)
    assert first["forward_ms"] == pytest.approx(4.0) and first["gap_ms"] == 0.0
    assert second["phase"] == "decode" and second["gap_ms"] == pytest.approx(8.0)
    assert second["t"] >= first["t"] > 1e9


def test_the_writer_flushes_in_the_background(tmp_path: Path) -> None:
    timeline = StepTimeline(tmp_path / "x.steps.jsonl", flush_seconds=0.01)
    try:
        timeline.record("embed", rows=4, tokens=40, ended=1.0, forward_seconds=0.001)
        for _ in range(500):
            if timeline.path.read_text():
                break
            timeline._closed.wait(0.01)
        assert json.loads(timeline.path.read_text())["phase"] == "embed"
    finally:
        timeline.close()
