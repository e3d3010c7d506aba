"""``python -m guidance`` is the ``iort`` command."""

import sys

from guidance.cli import main

sys.exit(main())
