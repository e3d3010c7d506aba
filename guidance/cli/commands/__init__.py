"""Subcommands of the ``iort`` command line, one module each.

Each module defines ``register(subparsers)`` which adds its parser and sets
``func=handler`` on it; the handler takes the parsed ``argparse.Namespace`` and returns the
process exit code. Handlers print; library code never does.
"""
