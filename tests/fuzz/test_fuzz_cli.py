"""Fuzz the ``iort`` command line: every subcommand with random options and values.

Each case builds an argv from the parser's own option table (so new options are fuzzed
without editing this file), with values from a pool of wrong ones (missing, empty,
garbage and directory paths; NaN, negative, huge and non-numeric numbers). Oracle:
argparse's usage error (exit 2), or ``main`` returning 0 or 2 with a one-line
``iort: error:`` on stderr; never exit 1 (an internal error) or a traceback. Commands
whose every input is a file run to their first check; the ones that would compute for
real from defaults alone (demo, bench, board, dose depth-curve, case phantom, trainee
progress) are parsed only.
"""

from __future__ import annotations

import argparse
import contextlib
import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.harness import CASES, deadline, fuzz_settings, workspace

pytestmark = pytest.mark.fuzz

_WORK = workspace("cli")
(_WORK / "empty.json").write_text("")
(_WORK / "garbage.dcm").write_bytes(b"\x00DICM\xff" * 10)
(_WORK / "list.json").write_text("[1, 2, 3]")
(_WORK / "nan.json").write_text('{"patient_from_applicator": NaN}')
(_WORK / "folder").mkdir()
_PATHS = [str(_WORK / n) for n in ("missing.json", "empty.json", "garbage.dcm", "list.json",
                                    "nan.json", "folder", "no/such/dir/x.json")] + ["", "-"]
_OUT = str(_WORK / "out")
_NUMBERS = ["nan", "inf", "-inf", "-1", "0", "1e308", "abc", "", "10", "1e-320", "0x10",
            "2147483648"]
_TEXTS = ["", "x", "liac", "nosuch", "DICT_4X4_50", "a,b", "=", "--", "é", "\x00"]
PARSE_ONLY = {"demo", "bench", "board", "dose depth-curve", "case phantom", "trainee progress"}


def _commands() -> dict[str, argparse.ArgumentParser]:
    from guidance.cli.main import build_parser

    out: dict[str, argparse.ArgumentParser] = {}

    def walk(parser: argparse.ArgumentParser, prefix: list[str]) -> None:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            out[" ".join(prefix)] = parser
            return
        for name, sub in subs[0].choices.items():
            walk(sub, [*prefix, name])

    walk(build_parser(), [])
    return out


_COMMANDS = _commands()


def _value(action: argparse.Action) -> st.SearchStrategy[str]:
    if action.choices:
        return st.sampled_from([*map(str, action.choices), "nosuch"])
    kind = getattr(action.type, "__name__", "")
    if kind == "Path" or action.dest in ("case", "source", "session", "cases"):
        return st.sampled_from(_PATHS)
    if kind in ("int", "float"):
        return st.sampled_from(_NUMBERS)
    return st.sampled_from(_TEXTS + _NUMBERS[:3] + _PATHS[:2])


@st.composite
def cli_argv(draw: st.DrawFn) -> tuple[str, list[str]]:
    """(command, argv): required arguments mostly present, optional ones at random."""
    command = draw(st.sampled_from(sorted(_COMMANDS)))
    argv = command.split()
    for action in _COMMANDS[command]._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        wanted = action.required or not action.option_strings
        if not draw(st.integers(0, 9)) < (9 if wanted else 3):
            continue
        if action.option_strings:
            argv.append(draw(st.sampled_from(action.option_strings)))
        if action.nargs == 0:
            continue
        value = _OUT if action.dest in ("out",) and draw(st.booleans()) else draw(_value(action))
        argv.append(value)
    if draw(st.integers(0, 9)) == 0:
        argv.insert(draw(st.integers(0, len(argv))), draw(st.sampled_from(
            ["--nosuch", "--debug=1", "-x", "--", "--out"])))
    return command, argv


def check_cli(case: tuple[str, list[str]]) -> None:
    from guidance.cli.main import build_parser, main

    command, argv = case
    CASES["cli"] += 1
    stderr = io.StringIO()
    with deadline(), contextlib.redirect_stderr(stderr), \
            contextlib.redirect_stdout(io.StringIO()):
        try:
            build_parser().parse_args(argv)
        except SystemExit as exc:
            assert exc.code == 2 and "usage:" in stderr.getvalue(), (exc.code, stderr.getvalue())
            return
        if command in PARSE_ONLY or "--debug" in argv:
            return
        code = main(argv)
    text = stderr.getvalue()
    assert "Traceback" not in text, text
    assert code in (0, 2), f"exit {code}: {text.strip()}"
    if code == 2:
        errors = [line for line in text.splitlines() if line.startswith("iort: error:")]
        assert len(errors) == 1, text


@fuzz_settings()
@given(cli_argv())
def test_cli_arguments(case) -> None:
    check_cli(case)
