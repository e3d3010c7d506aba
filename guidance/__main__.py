"""``python -m guidance`` is the ``iort`` command."""

import sys

from guidance.cli.main import main

sys.exit(main())
