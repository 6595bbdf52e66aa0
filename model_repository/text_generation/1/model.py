"""Triton entry point; the shared ds_triton package serves this folder's model.json."""

from ds_triton.backend.entrypoint import TritonPythonModel

__all__ = ["TritonPythonModel"]
