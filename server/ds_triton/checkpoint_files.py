"""Which checkpoint files a model may read: where they live, and which weights are safe.

A model repository is the unit an operator reviews and mounts, so a model
reads only files inside it, inside an installed Python package it names
(``package:<module>/<subpath>``), or under a folder the operator lists in
``DS_TRITON_CHECKPOINT_ROOTS`` (``os.pathsep``-separated, read by the server
process, never from ``model.json``). Paths are checked after resolving ``..``
and symbolic links, the checkpoint folder's and every link inside it; a model
folder that is itself a link (put there by whoever runs the server, as the
container's entry point does) is judged by the repository it links into.

Weights load from safetensors. Pickle-based files (``pytorch_model.bin``) can
run arbitrary code while they load, so they are refused unless the spec says
``"allow_pickle": true``.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ds_triton.errors import SpecError

PACKAGE_PREFIX = "package:"
ROOTS_ENV = "DS_TRITON_CHECKPOINT_ROOTS"

SAFETENSORS_SUFFIX = ".safetensors"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


class CheckpointError(SpecError):
    """The checkpoint is missing, unreadable, unsafe, or of an architecture the task cannot use."""


@dataclass(frozen=True)
class CheckpointLocation:
    """A resolved checkpoint folder and the folder it must stay inside."""

    path: Path
    boundary: Path
    boundary_kind: str  # "the model repository", "package 'x'", or "DS_TRITON_CHECKPOINT_ROOTS"


def resolve_checkpoint(
    reference: str, version_dir: Path, environ: Mapping[str, str] | None = None
) -> CheckpointLocation:
    """Resolve ``model.json``'s ``checkpoint`` for the model whose version folder is ``version_dir``.

    Raises:
        CheckpointError: a ``package:`` that is not installed, or a path that
            leaves the repository, the package, and every allowed root.
    """
    env = os.environ if environ is None else environ
    if reference.startswith(PACKAGE_PREFIX):
        module, _, subpath = reference[len(PACKAGE_PREFIX):].partition("/")
        found = importlib.util.find_spec(module) if module else None
        if found is None or not found.submodule_search_locations:
            raise CheckpointError(f"checkpoint {reference!r}: package {module!r} is not installed")
        package = Path(next(iter(found.submodule_search_locations))).resolve()
        return _contained(reference, package / subpath, [(package, f"package {module!r}")])
    path = Path(reference).expanduser()
    if not path.is_absolute():
        path = version_dir / path
    # The repository that holds the model folder. A model folder may itself be a link (the
    # container's entry point serves a repository of links to the models in use): then the
    # boundary is the repository it links into, never anything above it.
    repository = Path(version_dir).resolve().parent.parent
    roots = [(repository, "the model repository")]
    roots += [(root, ROOTS_ENV) for root in allowed_roots(env)]
    return _contained(reference, path, roots)


def allowed_roots(environ: Mapping[str, str]) -> list[Path]:
    """The folders ``DS_TRITON_CHECKPOINT_ROOTS`` lists (resolved; empty entries ignored)."""
    value = environ.get(ROOTS_ENV, "")
    return [Path(entry).expanduser().resolve() for entry in value.split(os.pathsep) if entry.strip()]


def _contained(reference: str, path: Path, roots: list[tuple[Path, str]]) -> CheckpointLocation:
    resolved = path.resolve()
    if not resolved.exists():  # nothing to read: the caller reports the missing folder
        return CheckpointLocation(resolved, roots[0][0], roots[0][1])
    for root, kind in roots:
        if _inside(resolved, root):
            _check_links(reference, resolved, root, kind)
            return CheckpointLocation(resolved, root, kind)
    first, kind = roots[0]
    raise CheckpointError(
        f"checkpoint {reference!r} resolves to {resolved}, outside {kind} ({first}); a model reads "
        f"only files inside its repository (e.g. 1/checkpoint/), an installed package, or a "
        f"folder the server's {ROOTS_ENV} lists"
    )


def _check_links(reference: str, folder: Path, root: Path, kind: str) -> None:
    """Every symbolic link inside the checkpoint folder must stay inside ``root`` too."""
    if not folder.is_dir():
        return
    for entry in _walk(folder):
        if entry.is_symlink() and not _inside(entry.resolve(), root):
            raise CheckpointError(
                f"checkpoint {reference!r}: {entry.relative_to(folder)} is a link to "
                f"{entry.resolve()}, outside {kind} ({root})"
            )


def _walk(folder: Path) -> Iterable[Path]:
    # Links to folders are not followed: the link itself is what is checked.
    for entry in folder.iterdir():
        yield entry
        if entry.is_dir() and not entry.is_symlink():
            yield from _walk(entry)


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


@dataclass(frozen=True)
class WeightFiles:
    """The weight files at the top of a checkpoint folder, by format."""

    safetensors: tuple[str, ...]
    pickle: tuple[str, ...]

    @classmethod
    def of(cls, folder: Path) -> WeightFiles:
        names = sorted(p.name for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
        return cls(
            safetensors=tuple(n for n in names if n.endswith(SAFETENSORS_SUFFIX)),
            pickle=tuple(n for n in names if n.endswith(PICKLE_SUFFIXES) and _is_weights(n)),
        )


def _is_weights(name: str) -> bool:
    # Checkpoint weights as transformers names them; not e.g. training_args.bin.
    return name.startswith(("pytorch_model", "model", "tf_model", "flax_model"))


def check_weights(folder: Path, allow_pickle: bool) -> WeightFiles:
    """The weights a load may read; refuses pickle-only checkpoints unless allowed.

    Raises:
        CheckpointError: no weights at all, or only pickle-based ones without
            ``allow_pickle``.
    """
    weights = WeightFiles.of(folder)
    if weights.safetensors:
        return weights
    if not weights.pickle:
        raise CheckpointError(
            f"checkpoint {folder} has no weights (expected model.safetensors, or sharded "
            "model-*.safetensors with their index)"
        )
    if not allow_pickle:
        raise CheckpointError(
            f"checkpoint {folder} has only pickle-based weights ({', '.join(weights.pickle)}), "
            "which can run arbitrary code while they load; convert them to safetensors where you "
            "trust them (`model.save_pretrained(folder)` writes safetensors), or set "
            '"allow_pickle": true in model.json to load them anyway'
        )
    return weights
