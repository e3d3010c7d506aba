"""Tool definitions: the shipped tools are consistent, bad definitions give clear errors."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from assets import asset_path
from guidance.tracking.tools import (
    BUILTIN_TOOLS,
    check_tool_set,
    load_builtin_tools,
    load_tool,
    tool_from_dict,
)
from models.base.errors import InputError


@pytest.fixture
def reference_dict() -> dict:
    return json.loads(asset_path("tools", "reference.json").read_text())


def test_builtin_tools_share_dictionary_with_distinct_ids() -> None:
    tools = load_builtin_tools()
    assert set(tools) == set(BUILTIN_TOOLS)
    ids = [i for t in tools.values() for i in t.marker_ids]
    assert len(ids) == len(set(ids))
    assert {t.dictionary for t in tools.values()} == {"DICT_4X4_50"}
    for tool in tools.values():
        assert tool.is_planar
        for marker in tool.markers:
            assert 30.0 <= marker.size_mm <= 40.0


def test_marker_corners_follow_aruco_order() -> None:
    """TL, TR, BR, BL seen from the front: (TR-TL) x (TL-BL) points toward the viewer (+z)."""
    for tool in load_builtin_tools().values():
        for marker in tool.markers:
            c = marker.corners_mm
            normal = np.cross(c[1] - c[0], c[0] - c[3])
            np.testing.assert_allclose(normal / np.linalg.norm(normal), [0, 0, 1], atol=1e-12)


def test_builtin_corners_match_opencv_single_marker_layout() -> None:
    """Same corner order as cv2.aruco's square model (IPPE_SQUARE object points)."""
    marker = load_tool("reference").markers[0]
    half = marker.size_mm / 2
    canonical = np.array([[-half, half, 0], [half, half, 0], [half, -half, 0], [-half, -half, 0]])
    centre = marker.corners_mm.mean(axis=0)
    np.testing.assert_allclose(marker.corners_mm - centre, canonical, atol=1e-12)
    # and IPPE_SQUARE accepts them, recovering a pose in front of the camera
    k = np.array([[800.0, 0, 320], [0, 800.0, 240], [0, 0, 1]])
    img, _ = cv2.projectPoints(canonical, np.zeros(3), np.array([0.0, 0, 300]), k, None)
    ok, _, tvec = cv2.solvePnP(canonical, img, k, None, flags=cv2.SOLVEPNP_IPPE_SQUARE)
    assert ok
    np.testing.assert_allclose(tvec.ravel(), [0, 0, 300], atol=1e-6)


def test_pointer_and_applicator_extras() -> None:
    tools = load_builtin_tools()
    assert tools["pointer"].tip_mm is not None and tools["pointer"].tip_mm.shape == (3,)
    tfa = tools["applicator"].tool_from_applicator
    assert tfa is not None
    np.testing.assert_allclose(tfa[:3, :3] @ tfa[:3, :3].T, np.eye(3), atol=1e-12)
    assert np.linalg.det(tfa[:3, :3]) == pytest.approx(1.0)
    # the applicator's beam axis (+z) points away from the camera-facing plate (-z of tool)
    np.testing.assert_allclose(tfa[:3, 2], [0, 0, -1], atol=1e-12)
    assert tools["reference"].tip_mm is None and tools["reference"].tool_from_applicator is None


def test_object_points_order_and_subset() -> None:
    tool = load_tool("pointer")
    pts = tool.object_points([tool.marker_ids[2], tool.marker_ids[0]])
    np.testing.assert_array_equal(pts[:4], tool.markers[2].corners_mm)
    np.testing.assert_array_equal(pts[4:], tool.markers[0].corners_mm)
    assert tool.object_points().shape == (4 * len(tool.markers), 3)


def _edit(data: dict, path: tuple, value: object) -> dict:
    out = copy.deepcopy(data)
    node = out
    for key in path[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return out


@pytest.mark.parametrize(("path", "value", "message"), [
    (("name",), KeyError, "missing field 'name'"),
    (("markers",), [], "non-empty list"),
    (("dictionary",), "DICT_NOPE", "not an OpenCV"),
    (("markers", 0, "id"), 50, r"\[0, 50\)"),
    (("markers", 0, "id"), 1, "distinct"),
    (("markers", 0, "size_mm"), 4.0, "millimetres"),
    (("markers", 0, "size_mm"), 41.0, "not a square"),
    (("markers", 0, "corners_mm"), [[0, 0, 0]], "4x3"),
    (("tip_mm",), [1, 2], "tip_mm"),
    (("tool_from_applicator",), np.diag([1.0, 1, -1, 1]).tolist(), "rigid"),
])
def test_bad_definitions_name_the_field(reference_dict: dict, path: tuple, value: object,
                                        message: str) -> None:
    with pytest.raises(InputError, match=message):
        tool_from_dict(_edit(reference_dict, path, value), source="x.json")


def test_load_tool_file_errors(tmp_path: Path, reference_dict: dict) -> None:
    with pytest.raises(InputError, match="does not exist"):
        load_tool(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match=r"bad.json: not valid JSON at line 1"):
        load_tool(bad)
    good = tmp_path / "ref.json"
    good.write_text(json.dumps(reference_dict))
    assert load_tool(good).marker_ids == (0, 1, 2, 3)


def test_tool_set_rejects_shared_ids_and_names(reference_dict: dict) -> None:
    ref = tool_from_dict(reference_dict)
    other = tool_from_dict(_edit(reference_dict, ("name",), "other"))
    with pytest.raises(InputError, match="used by both"):
        check_tool_set([ref, other])
    with pytest.raises(InputError, match="used twice"):
        check_tool_set([ref, ref])
    assert list(check_tool_set([ref])) == ["reference"]


@pytest.mark.parametrize(("path", "value", "message"), [
    (("markers",), [1, 2, 3], r"field markers\[0\]"),
    (("markers", 0, "size_mm"), "30", r"field markers\[0\]\.size_mm"),
    (("markers", 0, "corners_mm", 0, 0), 1e308, r"field markers\[0\]\.corners_mm\[0\]\[0\]"),
    (("tip_mm",), [0.0, 0.0, 3e38], r"field tip_mm\[2\]"),
    (("name",), None, r"field name"),
])
def test_tool_file_schema_refuses_wrong_types_and_ranges(reference_dict: dict, path: tuple,
                                                         value: object, message: str) -> None:
    with pytest.raises(InputError, match=rf"x\.json: {message}"):
        tool_from_dict(_edit(reference_dict, path, value), source="x.json")
