"""Tracked tools: rigid bodies carrying ArUco markers, loaded from ``assets/tools/*.json``.

A tool definition gives, in the tool frame (mm), the four corners of each marker in ArUco
order (top-left, top-right, bottom-right, bottom-left as seen from the front, the marker
normal pointing toward the viewer) — the same layout as OpenCV ``aruco.Board`` object
points. The pointer also carries its pivot-calibrated tip (``tip_mm``), the applicator the
transform ``tool_from_applicator`` from the applicator frame (origin at the centre of the
distal end face, +z along the beam into tissue) to its marker plate.

All shipped tools use one dictionary with distinct marker ids, so one frame can hold them
all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import cv2
import numpy as np
from pydantic import Field

from assets import asset_path
from models.base.errors import InputError
from models.base.files import read_json_file
from models.base.schema import FileSchema, bounded, check_file

#: Names of the tools shipped in ``assets/tools``.
BUILTIN_TOOLS: tuple[str, ...] = ("reference", "pointer", "applicator", "retractor")

#: Marker sizes outside this range (mm) are almost certainly a unit error (cm or m).
_SIZE_RANGE_MM = (5.0, 300.0)


@dataclass(frozen=True)
class Marker:
    """One square ArUco marker of a tool.

    Attributes
    ----------
    marker_id : int
        Id in the tool's dictionary.
    size_mm : float
        Side length of the black square (outer edge of the marker border), mm.
    corners_mm : (4, 3) float64 array
        Corners in the tool frame, ArUco order (TL, TR, BR, BL seen from the front).
    """

    marker_id: int
    size_mm: float
    corners_mm: np.ndarray


@dataclass(frozen=True)
class ToolDefinition:
    """A rigid tool made of one or several markers.

    Attributes
    ----------
    name : str
        Tool name (``reference``, ``pointer``, ``applicator``, ...).
    dictionary : str
        OpenCV predefined ArUco dictionary name, e.g. ``"DICT_4X4_50"``.
    markers : tuple of Marker
        The markers, ids unique within the tool.
    tip_mm : (3,) array or None
        Pointer tip in the tool frame, mm.
    tool_from_applicator : (4, 4) array or None
        Applicator frame to tool frame (applicator tools only).
    description : str
        Free text.
    """

    name: str
    dictionary: str
    markers: tuple[Marker, ...]
    tip_mm: np.ndarray | None = None
    tool_from_applicator: np.ndarray | None = None
    description: str = ""
    _by_id: dict[int, Marker] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._by_id.update({m.marker_id: m for m in self.markers})

    @property
    def marker_ids(self) -> tuple[int, ...]:
        """Ids of the tool's markers, in definition order."""
        return tuple(m.marker_id for m in self.markers)

    def marker(self, marker_id: int) -> Marker:
        """The marker with this id (KeyError if the tool has none)."""
        return self._by_id[marker_id]

    def has_marker(self, marker_id: int) -> bool:
        """Whether a marker id belongs to this tool."""
        return marker_id in self._by_id

    def object_points(self, marker_ids: Iterable[int] | None = None) -> np.ndarray:
        """Corners (N*4, 3) in the tool frame (mm) of the given markers (default: all)."""
        ids = self.marker_ids if marker_ids is None else tuple(marker_ids)
        return np.concatenate([self._by_id[i].corners_mm for i in ids], axis=0)

    @property
    def is_planar(self) -> bool:
        """True if all marker corners lie in one plane (within 0.01 mm)."""
        pts = self.object_points()
        centred = pts - pts.mean(axis=0)
        return bool(np.linalg.svd(centred, compute_uv=False)[-1] / np.sqrt(len(pts)) < 0.01)

    def aruco_dictionary(self) -> cv2.aruco.Dictionary:
        """The OpenCV dictionary object."""
        return cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, self.dictionary))


_ToolCoordinate = Annotated[float, bounded(-1000.0, 1000.0, "coordinate in the tool frame (mm)",
                                            low_inclusive=True)]
_TransformEntry = Annotated[float, bounded(-1e4, 1e4, "transform entry (mm or cosine)",
                                           low_inclusive=True)]


class _MarkerFile(FileSchema):
    id: int = Field(strict=True)
    size_mm: float = Field(strict=True, allow_inf_nan=False)
    corners_mm: list[list[_ToolCoordinate]]


class ToolFile(FileSchema):
    """Schema of a tool file (``assets/tools/*.json``): types and coordinate ranges (mm).

    Marker ids against the dictionary, marker sizes, square corners and a rigid
    ``tool_from_applicator`` are checked by :func:`tool_from_dict` itself.
    """

    name: str
    dictionary: str
    markers: list[_MarkerFile] = Field(min_length=1)
    tip_mm: list[_ToolCoordinate] | None = None
    tool_from_applicator: list[list[_TransformEntry]] | None = None
    description: str = ""


def _field(data: Mapping[str, Any], key: str, source: str) -> Any:
    if key not in data:
        raise InputError(f"{source}: missing field '{key}'; see assets/tools/reference.json "
                         "for the format")
    return data[key]


def _matrix(value: Any, shape: tuple[int, ...], where: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{where} must be numbers, got {value!r}") from exc
    if arr.shape != shape or not np.all(np.isfinite(arr)):
        want = "x".join(str(s) for s in shape)
        raise InputError(f"{where} must be a finite {want} array, got shape {arr.shape}")
    return arr


def tool_from_dict(data: Mapping[str, Any], *, source: str = "tool definition") -> ToolDefinition:
    """Build and validate a :class:`ToolDefinition` from parsed JSON.

    Raises
    ------
    InputError
        Naming ``source`` and the field when anything is missing or inconsistent: unknown
        dictionary, duplicate or out-of-range ids, corners that are not a square of
        ``size_mm``, a non-rigid ``tool_from_applicator``.
    """
    if not isinstance(data, Mapping):
        raise InputError(f"{source}: expected a JSON object, got {type(data).__name__}")
    name = str(_field(data, "name", source))
    dictionary = str(_field(data, "dictionary", source))
    if not dictionary.startswith("DICT_") or not hasattr(cv2.aruco, dictionary):
        raise InputError(f"{source}: field 'dictionary' {dictionary!r} is not an OpenCV "
                         "predefined ArUco dictionary (e.g. DICT_4X4_50)")
    n_ids = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, dictionary)).bytesList.shape[0]
    raw_markers = _field(data, "markers", source)
    if not isinstance(raw_markers, list) or not raw_markers:
        raise InputError(f"{source}: field 'markers' must be a non-empty list")
    check_file(ToolFile, dict(data), source=source,
               hint="see assets/tools/reference.json for the format")
    markers = []
    for k, raw in enumerate(raw_markers):
        where = f"{source}: markers[{k}]"
        marker_id = _field(raw, "id", where)
        if not isinstance(marker_id, int) or not 0 <= marker_id < n_ids:
            raise InputError(f"{where}.id must be an integer in [0, {n_ids}) for {dictionary}, "
                             f"got {marker_id!r}")
        size_mm = float(_field(raw, "size_mm", where))
        if not _SIZE_RANGE_MM[0] <= size_mm <= _SIZE_RANGE_MM[1]:
            raise InputError(f"{where}.size_mm={size_mm} is outside {_SIZE_RANGE_MM} mm; "
                             "sizes are in millimetres")
        corners = _matrix(_field(raw, "corners_mm", where), (4, 3), f"{where}.corners_mm")
        sides = np.linalg.norm(np.roll(corners, -1, axis=0) - corners, axis=1)
        diagonals = np.linalg.norm(corners[[2, 3]] - corners[[0, 1]], axis=1)
        if (not np.allclose(sides, size_mm, atol=0.05)
                or not np.allclose(diagonals, size_mm * np.sqrt(2.0), atol=0.05)):
            raise InputError(f"{where}.corners_mm are not a square of side size_mm={size_mm} "
                             f"(sides {np.round(sides, 3).tolist()} mm)")
        markers.append(Marker(marker_id, size_mm, corners))
    ids = [m.marker_id for m in markers]
    if len(set(ids)) != len(ids):
        raise InputError(f"{source}: marker ids must be distinct within a tool, got {ids}")
    tip = data.get("tip_mm")
    tip_mm = None if tip is None else _matrix(tip, (3,), f"{source}: tip_mm")
    raw_tfa = data.get("tool_from_applicator")
    tool_from_applicator = None
    if raw_tfa is not None:
        tool_from_applicator = _matrix(raw_tfa, (4, 4), f"{source}: tool_from_applicator")
        rot = tool_from_applicator[:3, :3]
        if (not np.allclose(tool_from_applicator[3], [0, 0, 0, 1])
                or not np.allclose(rot @ rot.T, np.eye(3), atol=1e-6)
                or np.linalg.det(rot) < 0):
            raise InputError(f"{source}: tool_from_applicator must be a rigid 4x4 transform "
                             "(orthonormal rotation, det +1, last row 0 0 0 1)")
    return ToolDefinition(name=name, dictionary=dictionary, markers=tuple(markers),
                          tip_mm=tip_mm, tool_from_applicator=tool_from_applicator,
                          description=str(data.get("description", "")))


def load_tool(path_or_name: str | Path) -> ToolDefinition:
    """Load a tool from a JSON file, or a built-in tool by name (``"pointer"``).

    Raises
    ------
    InputError
        If the file is missing, not JSON, or not a valid tool definition.
    """
    text = str(path_or_name)
    if text in BUILTIN_TOOLS:
        path = asset_path("tools", f"{text}.json")
    else:
        path = Path(text)
    if not path.exists():
        raise InputError(f"tool file {path} does not exist; give a tool JSON or one of "
                         f"{', '.join(BUILTIN_TOOLS)}")
    data = read_json_file(path, what="tool file")
    return tool_from_dict(data, source=str(path))


def load_builtin_tools() -> dict[str, ToolDefinition]:
    """The shipped reference plate, pointer, applicator and retractor, keyed by name."""
    return check_tool_set([load_tool(name) for name in BUILTIN_TOOLS])


def check_tool_set(tools: Iterable[ToolDefinition]) -> dict[str, ToolDefinition]:
    """Check that tools can be tracked together and return them keyed by name.

    Raises
    ------
    InputError
        If names repeat, dictionaries differ, or a marker id is used by two tools.
    """
    out: dict[str, ToolDefinition] = {}
    owner: dict[int, str] = {}
    for tool in tools:
        if tool.name in out:
            raise InputError(f"tool name {tool.name!r} is used twice")
        for marker_id in tool.marker_ids:
            if marker_id in owner:
                raise InputError(f"marker id {marker_id} is used by both {owner[marker_id]!r} "
                                 f"and {tool.name!r}; each marker id must belong to one tool")
            owner[marker_id] = tool.name
        out[tool.name] = tool
    dictionaries = {t.dictionary for t in out.values()}
    if len(dictionaries) > 1:
        raise InputError(f"tools tracked together must share one ArUco dictionary, got "
                         f"{sorted(dictionaries)}")
    return out
