"""Load a model folder's spec and checkpoint the way the Triton model does."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ds_triton.devices import Placement, available_cores
from ds_triton.embedding.encoder import TextEncoder
from ds_triton.loading import load_model
from ds_triton.spec import ModelSpec


def load_encoder(
    model_dir: Path, threads: int | None = None, version: str = "1", length_bucketing: bool | None = None
) -> TextEncoder:
    """The ``TextEncoder`` of ``model_dir`` (a model-repository folder) on CPU.

    Args:
        model_dir: e.g. ``model_repository/text_embedding``.
        threads: Intra-op threads; default every available core. A peer is one process,
            so it gets the whole machine, as the served model's instances do together
            (its spec may split the cores across instances, e.g. 2 x 1 thread).
        version: Version folder holding ``model.json``.
        length_bucketing: Override the spec's ``embedding.length_bucketing`` (``False`` gives
            the naive loop: one forward per batch, padded to its longest text).
    """
    version_dir = model_dir / version
    spec = ModelSpec.load(version_dir)
    threads = threads or available_cores()
    placement = Placement(device="cpu", threads=threads)
    options = spec.embedding_options
    if length_bucketing is not None:
        options = dataclasses.replace(options, length_bucketing=length_bucketing)
    return TextEncoder(load_model(spec, version_dir, placement), options)
