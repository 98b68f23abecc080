"""``python -m flowbridge.bfn fit --config models/bfn_discretized_digits.yaml``."""

import sys

from flowbridge.bfn.cli import main

if __name__ == "__main__":
    sys.exit(main())
