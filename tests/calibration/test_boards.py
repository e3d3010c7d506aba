"""Board definitions: shipped files, validation, and agreement with OpenCV's geometry."""

from __future__ import annotations

import json

import numpy as np
import pytest

from calibration.boards import (
    BoardSpec,
    board_from_values,
    load_board,
    shipped_boards,
)
from calibration.errors import CalibrationError


def test_shipped_boards_load_and_round_trip():
    names = shipped_boards()
    assert "charuco_7x5_30mm" in names
    for name in names:
        board = load_board(name)
        assert board.name == name
        again = BoardSpec.from_json_dict(board.to_json_dict())
        assert again == board


def test_corner_positions_match_the_square_grid():
    board = board_from_values("7x5", 30, 22, "DICT_5X5_100")
    corners = board.corners_mm
    assert corners.shape == (24, 3)
    # OpenCV numbers inner corners row by row starting at (1 square, 1 square).
    np.testing.assert_allclose(corners[0], [30, 30, 0], atol=1e-9)
    np.testing.assert_allclose(corners[5], [180, 30, 0], atol=1e-9)
    np.testing.assert_allclose(corners[6], [30, 60, 0], atol=1e-9)
    assert board.size_mm == (210.0, 150.0)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"marker_mm": 30.0}, "smaller than square_mm"),
    ({"squares_x": 2}, "squares_x"),
    ({"dictionary": "DICT_9X9_1"}, "not an OpenCV ArUco dictionary"),
    ({"dictionary": "DICT_4X4_50", "squares_x": 12, "squares_y": 10}, "has only 50"),
    ({"square_mm": float("nan")}, "square_mm"),
])
def test_invalid_board_is_refused(kwargs, match):
    values = {"name": "b", "squares_x": 7, "squares_y": 5, "square_mm": 30.0,
              "marker_mm": 22.0, "dictionary": "DICT_5X5_100"} | kwargs
    with pytest.raises(CalibrationError, match=match):
        BoardSpec(**values)


def test_board_file_errors_name_the_file(tmp_path):
    path = tmp_path / "myboard.json"
    path.write_text(json.dumps({"name": "x", "squares": [7, 5], "square_mm": 30}))
    with pytest.raises(CalibrationError, match=r"myboard.json: missing field\(s\) marker_mm"):
        load_board(path)
    path.write_text("{not json")
    with pytest.raises(CalibrationError, match="not valid JSON"):
        load_board(path)
    with pytest.raises(CalibrationError, match=r"neither a .json file nor a shipped board"):
        load_board("no_such_board")


def test_squares_argument_is_parsed():
    assert board_from_values("10x7", 25, 18, "DICT_5X5_100").n_corners == 54
    with pytest.raises(CalibrationError, match="--squares must look like 7x5"):
        board_from_values("7,5", 25, 18, "DICT_5X5_100")


@pytest.mark.parametrize("value", ["22", True, None])
def test_a_board_size_that_is_not_a_number_is_refused(tmp_path, value) -> None:
    """Found by the fuzzer: marker_mm "22" (a string) or true was kept as the size."""
    import json

    from assets import asset_path
    from calibration.boards import load_board

    data = json.loads(asset_path("boards", "charuco_7x5_30mm.json").read_text())
    data["marker_mm"] = value
    path = tmp_path / "board.json"
    path.write_text(json.dumps(data))
    with pytest.raises(CalibrationError, match=r"board\.json: marker_mm must be a number"):
        load_board(path)
