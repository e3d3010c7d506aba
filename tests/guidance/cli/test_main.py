"""The command line's error contract: user errors are one line (exit 2), defects exit 1."""

from __future__ import annotations

import argparse

import pytest

from guidance.cli import main as cli_main
from models.base.errors import InputError


def _parser_running(handler):
    parser = argparse.ArgumentParser(prog="iort")
    parser.add_argument("--debug", action="store_true")
    parser.set_defaults(func=handler)
    return lambda: parser


def _raise(exc: BaseException):
    def handler(args: argparse.Namespace) -> int:
        raise exc
    return handler


def test_input_error_is_one_line_exit_2(monkeypatch, capsys) -> None:
    error = InputError("plan.json: field 'pose' missing\nmore")
    monkeypatch.setattr(cli_main, "build_parser", _parser_running(_raise(error)))
    assert cli_main.main([]) == 2
    err = capsys.readouterr().err
    assert err == "iort: error: plan.json: field 'pose' missing\n"


def test_a_defect_is_not_reported_as_user_error(monkeypatch, capsys) -> None:
    monkeypatch.setattr(cli_main, "build_parser", _parser_running(_raise(RuntimeError("boom"))))
    assert cli_main.main([]) == 1
    err = capsys.readouterr().err
    assert err.startswith("iort: internal error: RuntimeError: boom")
    assert "--debug" in err


def test_debug_shows_the_traceback(monkeypatch) -> None:
    monkeypatch.setattr(cli_main, "build_parser", _parser_running(_raise(RuntimeError("boom"))))
    with pytest.raises(RuntimeError, match="boom"):
        cli_main.main(["--debug"])


def test_interrupt_exits_130(monkeypatch, capsys) -> None:
    monkeypatch.setattr(cli_main, "build_parser", _parser_running(_raise(KeyboardInterrupt())))
    assert cli_main.main([]) == 130
    assert capsys.readouterr().err == "iort: interrupted\n"
