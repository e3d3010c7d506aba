"""File schemas: one line naming the file, the field (with its unit and range) and the value."""

from __future__ import annotations

from typing import Annotated

import pytest
from pydantic import Field

from models.base.errors import InputError
from models.base.schema import FileSchema, bounded, check_file


class _Inner(FileSchema):
    depth_mm: float = bounded(0.0, 100.0, "depth in water (mm)", low_inclusive=True)


class _Outer(FileSchema):
    name: str = Field(min_length=1)
    energy_mev: float = bounded(0.0, 50.0, "nominal energy (MeV)")
    points: list[_Inner] = Field(default_factory=list)
    sizes_mm: list[Annotated[float, bounded(0.0, 10.0, "size (mm)")]] = Field(
        default_factory=list)


class _OtherError(InputError):
    """Stands for a package's own InputError subclass."""


def test_valid_values_pass_and_unknown_keys_are_ignored() -> None:
    out = check_file(_Outer, {"name": "a", "energy_mev": 6, "points": [{"depth_mm": 0}],
                              "comment": "x"}, source="f.json")
    assert out.energy_mev == 6.0 and out.points[0].depth_mm == 0.0


@pytest.mark.parametrize(("data", "message"), [
    ({"name": "a", "energy_mev": "NaN"}, r"field energy_mev \(nominal energy \(MeV\), "
                                         r"0 < x <= 50\): Input should be a valid number, "
                                         r"got 'NaN'"),
    ({"name": "a", "energy_mev": float("nan")}, r"field energy_mev .*finite number, got nan"),
    ({"name": "a", "energy_mev": 0}, r"field energy_mev .*greater than 0, got 0"),
    ({"name": "a", "energy_mev": 1e308}, r"field energy_mev .*less than or equal to 50"),
    ({"name": "a", "energy_mev": True}, r"field energy_mev .*valid number, got True"),
    ({"name": "a"}, r"field energy_mev \(nominal energy.*\): Field required;"),
    ({"name": "a", "energy_mev": 6, "points": [{"depth_mm": -1}]},
     r"field points\[0\]\.depth_mm \(depth in water \(mm\), 0 <= x <= 100\)"),
    ({"name": "a", "energy_mev": 6, "sizes_mm": [1, 20]}, r"field sizes_mm\[1\]"),
    ({"name": "a", "energy_mev": 6, "points": [1, 2, 3]}, r"field points\[0\]"),
])
def test_wrong_values_give_one_line_naming_file_and_field(data, message) -> None:
    with pytest.raises(_OtherError, match=rf"^f\.json: {message}") as info:
        check_file(_Outer, data, source="f.json", error=_OtherError)
    assert len(str(info.value).splitlines()) == 1
    assert str(info.value).endswith("fix the value in the file")


def test_top_level_must_be_an_object() -> None:
    with pytest.raises(InputError, match=r"f\.json: expected a JSON object .* got list"):
        check_file(_Outer, [1, 2], source="f.json")
