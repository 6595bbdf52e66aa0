"""Pack wheels into transfers of bounded size, and join them again on the other side.

Stdlib only: ``unpack`` runs on the GPU machine before anything is installed.

    python bundle.py pack WHEELS OUT --part-mib 40 --transfer-mib 60
    python bundle.py unpack DEST ROOT [ROOT ...]

``pack`` splits files larger than a part, then fills folders ``OUT/transfer-N``
with pieces (largest first, first fit), each at most ``--transfer-mib``, and
writes the same ``MANIFEST.json`` (every file, its sha256 and its pieces) into
each. ``unpack`` finds the pieces under any ROOT (transfers may arrive in
different calls and places), joins each file into DEST and checks its sha256;
a missing piece or a wrong checksum is an error that names the file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

MANIFEST = "MANIFEST.json"
MIB = 1024 * 1024


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(MIB), b""):
            digest.update(block)
    return digest.hexdigest()


def pack(wheels: Path, out: Path, part_mib: int, transfer_mib: int) -> list[Path]:
    """Split and pack ``wheels/*`` into ``out/transfer-N``; returns the transfer folders."""
    if part_mib > transfer_mib:
        raise SystemExit(f"a part ({part_mib} MiB) must fit in a transfer ({transfer_mib} MiB)")
    staging = out / "pieces"
    staging.mkdir(parents=True, exist_ok=True)
    files = []
    for path in sorted(p for p in wheels.iterdir() if p.is_file()):
        pieces = _split(path, staging, part_mib * MIB)
        files.append(
            {"name": path.name, "size": path.stat().st_size, "sha256": sha256(path), "pieces": pieces}
        )
    transfers: list[tuple[Path, int]] = []
    for piece in sorted(staging.iterdir(), key=lambda p: p.stat().st_size, reverse=True):
        size = piece.stat().st_size
        target = next((i for i, (_, used) in enumerate(transfers) if used + size <= transfer_mib * MIB), None)
        if target is None:
            transfers.append((out / f"transfer-{len(transfers) + 1}", 0))
            target = len(transfers) - 1
        folder, used = transfers[target]
        folder.mkdir(parents=True, exist_ok=True)
        shutil.move(str(piece), folder / piece.name)
        transfers[target] = (folder, used + size)
    staging.rmdir()
    manifest = json.dumps({"files": files}, indent=2) + "\n"
    for folder, used in transfers:
        (folder / MANIFEST).write_text(manifest)
        print(f"{folder.name}: {used / MIB:.1f} MiB")
    total = sum(f["size"] for f in files)
    print(f"{len(files)} files, {total / MIB:.1f} MiB in {len(transfers)} transfer(s) under {out}")
    return [folder for folder, _ in transfers]


def _split(path: Path, staging: Path, part_bytes: int) -> list[str]:
    if path.stat().st_size <= part_bytes:
        shutil.copy2(path, staging / path.name)
        return [path.name]
    names = []
    with path.open("rb") as stream:
        for index, block in enumerate(iter(lambda: stream.read(part_bytes), b"")):
            name = f"{path.name}.part{index:03d}"
            (staging / name).write_bytes(block)
            names.append(name)
    return names


def unpack(dest: Path, roots: list[Path]) -> list[Path]:
    """Join every file of the manifest into ``dest``; raises ``SystemExit`` naming what is missing."""
    manifests = [m for root in roots for m in sorted(root.rglob(MANIFEST))]
    if not manifests:
        raise SystemExit(f"no {MANIFEST} under {', '.join(map(str, roots))}: run scripts/gpu_bundle.sh "
                         "and carry its transfer folders")
    files = json.loads(manifests[0].read_text())["files"]
    found = {p.name: p for root in roots for p in root.rglob("*") if p.is_file()}
    dest.mkdir(parents=True, exist_ok=True)
    joined = []
    problems = []
    for entry in files:
        missing = [piece for piece in entry["pieces"] if piece not in found]
        if missing:
            problems.append(f"{entry['name']}: missing piece(s) {', '.join(missing)}")
            continue
        target = dest / entry["name"]
        with target.open("wb") as out:
            for piece in entry["pieces"]:
                with found[piece].open("rb") as stream:
                    shutil.copyfileobj(stream, out, MIB)
        if sha256(target) != entry["sha256"]:
            problems.append(f"{entry['name']}: sha256 differs from the manifest (a damaged transfer)")
            target.unlink()
            continue
        joined.append(target)
    if problems:
        raise SystemExit("bundle incomplete:\n  " + "\n  ".join(problems))
    print(f"joined {len(joined)} files into {dest}")
    return joined


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    packing = commands.add_parser("pack")
    packing.add_argument("wheels", type=Path)
    packing.add_argument("out", type=Path)
    packing.add_argument("--part-mib", type=int, default=40)
    packing.add_argument("--transfer-mib", type=int, default=60)
    unpacking = commands.add_parser("unpack")
    unpacking.add_argument("dest", type=Path)
    unpacking.add_argument("roots", type=Path, nargs="+")
    args = parser.parse_args(argv)
    if args.command == "pack":
        pack(args.wheels, args.out, args.part_mib, args.transfer_mib)
    else:
        unpack(args.dest, args.roots)
    return 0


if __name__ == "__main__":
    sys.exit(main())
