"""Subcommands of ``ds-triton``; each module adds its own parser with ``register``."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from ds_triton.commands import add_model, check, doctor, render, serve, tune

Register = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]

COMMANDS: list[Register] = [
    serve.register, add_model.register, check.register, render.register, doctor.register, tune.register,
]
