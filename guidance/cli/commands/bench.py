"""``iort bench``: run the benchmarks, print a table, write flat JSON."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from models.base.errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``bench`` subcommand."""
    parser = subparsers.add_parser(
        "bench", help="run speed/accuracy benchmarks and write JSON",
        description="Run the benchmarks under benchmarks/, print a table and write a flat "
                    "JSON object {\"group.metric\": number}.")
    parser.add_argument("--only", metavar="GROUP", action="append",
                        help="run only this group (repeatable)")
    parser.add_argument("--json", metavar="FILE", type=Path,
                        help="write the results to FILE as JSON")
    parser.add_argument("--quick", action="store_true",
                        help="smaller problem sizes (for tests and smoke runs)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the selected benchmark groups."""
    from benchmarks import discover

    modules = discover()
    groups = [m.group for m in modules]
    if args.only:
        unknown = sorted(set(args.only) - set(groups))
        if unknown:
            raise InputError(f"--only: unknown group(s) {', '.join(unknown)}; "
                             f"choose from: {', '.join(groups)}")
        modules = [m for m in modules if m.group in args.only]
    results: dict[str, float] = {}
    for module in modules:
        print(f"[bench] {module.group} ...", flush=True)
        results.update(module.run(quick=args.quick))
    width = max((len(k) for k in results), default=10)
    print(f"{'key':<{width}}  value")
    for key, value in sorted(results.items()):
        shown = f"{value:.4g}" if isinstance(value, float) and math.isfinite(value) else value
        print(f"{key:<{width}}  {shown}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
        print(f"wrote {args.json}")
    return 0
