"""The client distribution's version: the one place it is written (read by client/pyproject.toml)."""

__version__ = "0.1.0"
