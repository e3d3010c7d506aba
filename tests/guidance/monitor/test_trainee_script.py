"""Trainee scripts: the file is checked, one line naming the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from guidance.monitor.trainee_script import load_script
from models.base.errors import InputError


def test_a_bad_script_names_the_field(tmp_path) -> None:
    path = tmp_path / "path.json"
    path.write_text(json.dumps({"commands": [{"t_s": 0, "do": "hold"}]}))
    with pytest.raises(InputError, match=r"commands\[0\].toward"):
        load_script(path)
    path.write_text(json.dumps({"commands": [{"t_s": 0, "do": "jump"}]}))
    with pytest.raises(InputError, match=r"path.json: field commands\[0\].do"):
        load_script(path)
    path.write_text(json.dumps({"commands": [{"t_s": 0, "do": "hold", "motion": "roll",
                                              "toward": "left"}]}))
    with pytest.raises(InputError, match="one of: clockwise, counterclockwise"):
        load_script(path)


def test_the_documented_example_is_a_valid_script(tmp_path) -> None:
    doc = (Path(__file__).parents[3] / "docs" / "trainee.md").read_text(encoding="utf-8")
    example = doc.split("```json\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "example.json"
    path.write_text(example)
    script = load_script(path)
    assert [c.do for c in script.commands][-1] == "confirm"
