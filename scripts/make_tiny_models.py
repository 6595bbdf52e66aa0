"""Create the offline default checkpoints that no package ships (see issue: text generation).

Placeholder until the text-generation model lands: it accepts the flags setup passes.
"""

from __future__ import annotations

import argparse


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quiet", action="store_true")
    parser.parse_args()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
