"""``python -m guidance`` is the ``iort`` command."""

import sys

from guidance.cli.main import main

if __name__ == "__main__":   # not when a spawned child (the Monte Carlo check) imports it
    sys.exit(main())
