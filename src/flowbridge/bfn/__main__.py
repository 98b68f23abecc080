"""``python -m flowbridge.bfn fit --config models/bfn_discretized_digits.yaml``: the same as ``flowbridge fit``."""

import sys

from flowbridge.cli import main

if __name__ == "__main__":
    sys.exit(main())
