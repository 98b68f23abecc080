"""``python -m flowbridge``: the same as the ``flowbridge`` command."""

import sys

from flowbridge.cli import main

sys.exit(main())
