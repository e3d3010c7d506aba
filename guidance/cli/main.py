"""The ``iort`` command line: argparse subcommands, ``main(argv=None)`` for in-process tests.

Errors meant for the user (bad files, bad values: :class:`~models.base.errors.InputError`
and its subclasses) are printed as one line ``iort: error: ...`` with exit code 2. Any other
exception is a defect of the program: one line ``iort: internal error: ...`` with exit code 1
and a hint to rerun with ``--debug``, which shows the traceback.

Everything a command writes may hold patient data, so ``main`` runs the command with the
umask 077: files the program does not create through :mod:`models.base.files` (images,
video, third-party writers) are owner-only too. The previous umask is restored on return.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from models.base.errors import IortError

#: Subcommand modules under ``guidance.cli.commands``, in the order ``iort --help`` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "demo",
    "bench",
    "board",
    "calibrate",
    "case",
    "export",
    "dose",
    "beam",
    "run",
    "sweep",
    "report",
    "replay",
    "rehearse",
    "trainee",
)

#: Exceptions that are the user's input being wrong rather than a defect of the program.
USER_ERRORS: tuple[type[BaseException], ...] = (IortError,)


def build_parser() -> argparse.ArgumentParser:
    """Build the ``iort`` argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="iort",
        description="Augmented 3D visualization and surgical guidance for intraoperative "
                    "radiotherapy (IORT).",
    )
    parser.add_argument("--debug", action="store_true",
                        help="show full tracebacks and debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"guidance.cli.commands.{name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 2 user error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    previous_umask = os.umask(0o077)   # patient data: owner-only, whatever writes it
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as exc:
        if args.debug:
            raise
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"iort: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("iort: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            raise
        print(f"iort: internal error: {type(exc).__name__}: {exc} (a defect of iort, not of your "
              "input; run again with --debug for the traceback and report it)", file=sys.stderr)
        return 1
    finally:
        os.umask(previous_umask)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
