"""Read ``config.pbtxt`` with Triton's own ``ModelConfig`` protobuf schema."""

from __future__ import annotations

from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc


class ConfigSchemaError(ValueError):
    """``config.pbtxt`` is not a valid ``ModelConfig``; ``line``/``column`` locate it (1-based)."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None) -> None:
        super().__init__(message)
        self.line = line
        self.column = column


def parse_config(text: str) -> mc.ModelConfig:
    """Parse config text exactly as Triton does (protobuf text format, unknown fields rejected).

    Raises:
        ConfigSchemaError: with the parser's message and position.
    """
    try:
        return text_format.Parse(text, mc.ModelConfig())
    except text_format.ParseError as exc:
        line, column = exc.GetLine(), exc.GetColumn()
        message = str(exc)
        # The parser prefixes "line:col : "; keep the position in the fields only.
        prefix = f"{line}:{column} : "
        if message.startswith(prefix):
            message = message[len(prefix) :]
        raise ConfigSchemaError(message, line, column) from exc


def read_config(path: Path) -> mc.ModelConfig:
    """Parse the ``config.pbtxt`` at ``path`` (see ``parse_config``)."""
    return parse_config(Path(path).read_text())
