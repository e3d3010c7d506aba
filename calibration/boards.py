"""ChArUco board definitions: a frozen :class:`BoardSpec`, loaded from ``assets/boards/*.json``.

A board file looks like::

    {"name": "charuco_7x5_30mm", "type": "charuco", "squares": [7, 5],
     "square_mm": 30.0, "marker_mm": 22.0, "dictionary": "DICT_5X5_100",
     "legacy_pattern": false, "description": "..."}

``squares`` is ``[columns, rows]`` (OpenCV ``CharucoBoard(size=(cols, rows))``); the board
frame has its origin at the top-left chessboard corner of the printed board, x along the
columns, y along the rows, z into the board (OpenCV convention), in mm. The board uses a
different dictionary from the tracked tools (``DICT_4X4_50``) so the two never get mixed up.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from calibration.errors import CalibrationError
from calibration.validation import as_positive
from models.base.files import read_json_file

#: Directory of the shipped board files (``assets/boards`` in the source tree and wheel).
BOARDS_DIR = Path(__file__).resolve().parent.parent / "assets" / "boards"

#: Board used when the user names none.
DEFAULT_BOARD = "charuco_7x5_30mm"

_REQUIRED = ("name", "squares", "square_mm", "marker_mm", "dictionary")


def dictionary_names() -> list[str]:
    """Names of the predefined ArUco dictionaries OpenCV offers (``DICT_4X4_50`` ...)."""
    return sorted(n for n in dir(cv2.aruco) if n.startswith("DICT_"))


def get_dictionary(name: str, *, field: str = "dictionary") -> cv2.aruco.Dictionary:
    """The predefined ArUco dictionary called ``name`` (e.g. ``"DICT_5X5_100"``)."""
    if not isinstance(name, str) or not name.startswith("DICT_") or not hasattr(cv2.aruco, name):
        raise CalibrationError(f"{field} {name!r} is not an OpenCV ArUco dictionary; use one of "
                               f"{', '.join(dictionary_names())}")
    return cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, name))


@dataclass(frozen=True)
class BoardSpec:
    """A printed ChArUco board.

    Attributes
    ----------
    name : str
        Short identifier (the JSON file stem for shipped boards).
    squares_x, squares_y : int
        Chessboard squares along x (columns) and y (rows).
    square_mm, marker_mm : float
        Side of a chessboard square and of an ArUco marker inside a white square, mm.
    dictionary : str
        OpenCV predefined dictionary name, e.g. ``"DICT_5X5_100"``.
    legacy_pattern : bool
        ``True`` for boards printed by OpenCV < 4.6 with an even row count (their top-left
        square is white); see ``CharucoBoard.setLegacyPattern``.
    description : str
        Free text.
    """

    name: str
    squares_x: int
    squares_y: int
    square_mm: float
    marker_mm: float
    dictionary: str
    legacy_pattern: bool = False
    description: str = ""

    def __post_init__(self) -> None:
        for field in ("squares_x", "squares_y"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 3:
                raise CalibrationError(f"board {self.name!r}: {field} must be a whole number "
                                       f">= 3, got {value!r}")
        as_positive(self.square_mm, name=f"board {self.name!r}: square_mm")
        as_positive(self.marker_mm, name=f"board {self.name!r}: marker_mm")
        if not self.marker_mm < self.square_mm:
            raise CalibrationError(f"board {self.name!r}: marker_mm ({self.marker_mm}) must be "
                                   f"smaller than square_mm ({self.square_mm})")
        size = get_dictionary(self.dictionary, field=f"board {self.name!r}: dictionary")
        available = size.bytesList.shape[0]
        if self.n_markers > available:
            raise CalibrationError(f"board {self.name!r}: {self.n_markers} markers needed but "
                                   f"{self.dictionary} has only {available}; use a larger "
                                   f"dictionary or fewer squares")

    @property
    def n_markers(self) -> int:
        """Number of ArUco markers on the board (the white squares)."""
        return (self.squares_x * self.squares_y) // 2

    @property
    def n_corners(self) -> int:
        """Number of inner chessboard (ChArUco) corners."""
        return (self.squares_x - 1) * (self.squares_y - 1)

    @property
    def size_mm(self) -> tuple[float, float]:
        """Printed board ``(width, height)`` in mm."""
        return self.squares_x * self.square_mm, self.squares_y * self.square_mm

    @cached_property
    def cv_board(self) -> cv2.aruco.CharucoBoard:
        """The OpenCV ``CharucoBoard`` (object points in mm)."""
        board = cv2.aruco.CharucoBoard((self.squares_x, self.squares_y), float(self.square_mm),
                                       float(self.marker_mm), get_dictionary(self.dictionary))
        board.setLegacyPattern(bool(self.legacy_pattern))
        return board

    @property
    def corners_mm(self) -> np.ndarray:
        """(n_corners, 3) ChArUco corner positions in the board frame, mm (z = 0)."""
        return np.asarray(self.cv_board.getChessboardCorners(), dtype=np.float64).reshape(-1, 3)

    def describe(self) -> str:
        """One line: ``7x5 squares of 30 mm, 22 mm markers, DICT_5X5_100``."""
        return (f"{self.squares_x}x{self.squares_y} squares of {self.square_mm:g} mm, "
                f"{self.marker_mm:g} mm markers, {self.dictionary}")

    def to_json_dict(self) -> dict[str, Any]:
        """The board as the JSON object stored in ``assets/boards``."""
        data = asdict(self)
        data["type"] = "charuco"
        data["squares"] = [data.pop("squares_x"), data.pop("squares_y")]
        return data

    @classmethod
    def from_json_dict(cls, data: Any, *, source: str = "board") -> BoardSpec:
        """Build from a parsed board JSON object; ``source`` names the file in messages."""
        if not isinstance(data, dict):
            raise CalibrationError(f"{source}: a board file must hold a JSON object")
        missing = [k for k in _REQUIRED if k not in data]
        if missing:
            raise CalibrationError(f"{source}: missing field(s) {', '.join(missing)}; see "
                                   f"assets/boards/{DEFAULT_BOARD}.json for the format")
        if data.get("type", "charuco") != "charuco":
            raise CalibrationError(f"{source}: type {data['type']!r} is not supported "
                                   f"(only 'charuco')")
        squares = data["squares"]
        if not (isinstance(squares, list) and len(squares) == 2):
            raise CalibrationError(f"{source}: squares must be [columns, rows], got {squares!r}")
        for key in ("square_mm", "marker_mm"):   # "22" or true would be taken as a size
            value = data[key]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise CalibrationError(f"{source}: {key} must be a number (mm), got "
                                       f"{value!r}")
        try:
            return cls(name=str(data["name"]), squares_x=squares[0], squares_y=squares[1],
                       square_mm=data["square_mm"], marker_mm=data["marker_mm"],
                       dictionary=data["dictionary"],
                       legacy_pattern=bool(data.get("legacy_pattern", False)),
                       description=str(data.get("description", "")))
        except CalibrationError as exc:
            raise CalibrationError(f"{source}: {exc}") from exc
        except TypeError as exc:
            raise CalibrationError(f"{source}: {exc}") from exc


def shipped_boards() -> list[str]:
    """Names of the boards shipped in ``assets/boards``."""
    return sorted(p.stem for p in BOARDS_DIR.glob("*.json"))


def load_board(name_or_path: str | Path) -> BoardSpec:
    """Load a board by shipped name (``"charuco_7x5_30mm"``) or from a JSON file path.

    Raises
    ------
    CalibrationError
        Unknown name, unreadable file, or a malformed board; the message says which.
    """
    path = Path(name_or_path)
    if path.suffix.lower() != ".json":
        shipped = BOARDS_DIR / f"{name_or_path}.json"
        if not shipped.exists():
            raise CalibrationError(f"board {str(name_or_path)!r} is neither a .json file nor a "
                                   f"shipped board ({', '.join(shipped_boards()) or 'none'})")
        path = shipped
    data = read_json_file(path, what="board file", error=CalibrationError)
    return BoardSpec.from_json_dict(data, source=str(path))


def board_from_values(squares: str, square_mm: float, marker_mm: float,
                      dictionary: str, *, legacy_pattern: bool = False) -> BoardSpec:
    """Board from command-line values, e.g. ``board_from_values("7x5", 30, 22, "DICT_5X5_100")``."""
    try:
        cols, rows = (int(v) for v in str(squares).lower().split("x"))
    except ValueError as exc:
        raise CalibrationError(f"--squares must look like 7x5 (columns x rows), "
                               f"got {squares!r}") from exc
    return BoardSpec(name=f"charuco_{cols}x{rows}_{float(square_mm):g}mm", squares_x=cols,
                     squares_y=rows, square_mm=float(square_mm), marker_mm=float(marker_mm),
                     dictionary=dictionary, legacy_pattern=legacy_pattern)
