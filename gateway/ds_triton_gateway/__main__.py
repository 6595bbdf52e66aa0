"""``python -m ds_triton_gateway``: the same as ``ds-triton-gateway``."""

import sys

from ds_triton_gateway.cli import main

sys.exit(main())
