"""scripts/gpu/bundle.py: wheels split into transfers under a size cap, joined and checked on arrival."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from scripts.gpu import bundle

MIB = 1024 * 1024


@pytest.fixture
def wheels(tmp_path: Path) -> Path:
    folder = tmp_path / "wheels"
    folder.mkdir()
    (folder / "big-1.0-py3-none-any.whl").write_bytes(os.urandom(5 * MIB + 123))
    (folder / "small-1.0-py3-none-any.whl").write_bytes(b"small")
    (folder / "mid-1.0-py3-none-any.whl").write_bytes(os.urandom(MIB // 2))
    return folder


def test_pack_keeps_every_transfer_under_its_cap_and_unpack_restores_every_file(
    wheels: Path, tmp_path: Path
) -> None:
    transfers = bundle.pack(wheels, tmp_path / "out", part_mib=1, transfer_mib=2)
    # big: 5 parts of 1 MiB and its 123-byte tail; largest first, first fit: 1+1, 1+1, 1+0.5+tails.
    assert len(transfers) == 3
    for folder in transfers:
        pieces = [p for p in folder.iterdir() if p.name != bundle.MANIFEST]
        assert sum(p.stat().st_size for p in pieces) <= 2 * MIB
        manifest = json.loads((folder / bundle.MANIFEST).read_text())
        assert {f["name"] for f in manifest["files"]} == {p.name for p in wheels.iterdir()}
    # Transfers may arrive in different places (one device call each).
    joined = bundle.unpack(tmp_path / "joined", transfers)
    assert sorted(p.name for p in joined) == sorted(p.name for p in wheels.iterdir())
    for path in joined:
        assert path.read_bytes() == (wheels / path.name).read_bytes()


def test_a_missing_or_damaged_piece_names_the_file(wheels: Path, tmp_path: Path) -> None:
    transfers = bundle.pack(wheels, tmp_path / "out", part_mib=1, transfer_mib=2)
    part = next(p for t in transfers for p in t.iterdir() if p.name.endswith(".part002"))
    data = bytearray(part.read_bytes())
    data[0] ^= 0xFF
    part.write_bytes(bytes(data))
    with pytest.raises(SystemExit, match=r"big-1\.0-py3-none-any\.whl: sha256 differs"):
        bundle.unpack(tmp_path / "joined", transfers)
    part.unlink()
    with pytest.raises(SystemExit, match=r"big-1\.0-py3-none-any\.whl: missing piece\(s\) .*part002"):
        bundle.unpack(tmp_path / "joined", transfers)


def test_nothing_to_unpack_says_what_to_carry(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"run scripts/gpu_bundle\.sh"):
        bundle.unpack(tmp_path / "joined", [tmp_path])
