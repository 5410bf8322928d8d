"""``python -m polykeras``: the same as the ``polykeras`` command."""

import sys

from polykeras.cli import main

sys.exit(main())
