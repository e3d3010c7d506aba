"""Fuzz every JSON format read from outside: structural edits of a valid file, read back.

Oracle: the reader refuses (one-line InputError naming the file) or returns exactly what
the edited file says, checked against the file parsed independently with ``json``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.harness import fuzz_settings, mutated_bytes, mutated_json, run_case, workspace

pytestmark = pytest.mark.fuzz

_WORK = workspace("json")


def _write(name: str, doc, raw: bytes | None = None) -> Path:
    path = _WORK / name
    if raw is not None:
        path.write_bytes(raw)
    else:
        path.write_text(json.dumps(doc, allow_nan=True), encoding="utf-8")
    return path


def _edited(doc) -> st.SearchStrategy:
    """A structural edit of ``doc`` (mostly) or a byte-level edit of its text."""
    text = json.dumps(doc).encode()
    return st.one_of(mutated_json(doc).map(lambda d: (d, None)),
                     mutated_bytes(text).map(lambda b: (None, b)))


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) \
        and math.isfinite(value)


def _rigid(matrix: np.ndarray, *, max_translation_mm: float = 1e4) -> None:
    m = np.asarray(matrix, dtype=np.float64)
    assert m.shape == (4, 4) and np.all(np.isfinite(m))
    np.testing.assert_allclose(m[3], [0, 0, 0, 1], atol=1e-6)
    np.testing.assert_allclose(m[:3, :3] @ m[:3, :3].T, np.eye(3), atol=1e-3)
    assert np.linalg.det(m[:3, :3]) > 0
    assert np.linalg.norm(m[:3, 3]) <= max_translation_mm, "translation beyond 10 m"


# ------------------------------------------------------------------ camera calibration

_CALIBRATION = {
    "format": "iort-camera-calibration", "version": 1, "image_size": [640, 480],
    "camera_matrix": [[800.0, 0.0, 319.5], [0.0, 805.0, 239.5], [0.0, 0.0, 1.0]],
    "dist_coeffs": [0.1, -0.05, 0.001, 0.0005, 0.01], "rms_px": 0.3,
    "per_view_px": [0.2, 0.3, 0.4], "intrinsics_std_px": [0.5, 0.5, 0.3, 0.3],
    "coverage_percent": 60.0, "coverage_map": [[1, 0], [2, 1]], "view_names": ["a", "b", "c"],
}


def check_calibration_json(edit) -> None:
    from calibration.io import load_calibration

    doc, raw = edit
    path = _write("camera.json", doc, raw)
    cal = run_case("calibration_json", path, lambda: load_calibration(path))
    if cal is None:
        return
    if doc is None:
        doc = json.loads(raw)
    k = np.asarray(cal.camera_matrix)
    np.testing.assert_array_equal(k, np.asarray(doc["camera_matrix"], dtype=np.float64))
    np.testing.assert_array_equal(cal.dist_coeffs,
                                  np.asarray(doc["dist_coeffs"], dtype=np.float64).ravel())
    assert all(_number(v) and v == int(v) for v in doc["image_size"]), "image_size not whole"
    assert tuple(cal.image_size) == tuple(doc["image_size"])
    assert cal.rms_px == doc["rms_px"] and _number(doc["rms_px"])
    assert k[0, 0] > 0 and k[1, 1] > 0 and np.all(np.isfinite(k))
    np.testing.assert_array_equal(k[2], [0, 0, 1])
    assert k[1, 0] == 0 and np.all(np.abs(cal.dist_coeffs) <= 1e3)


@fuzz_settings()
@given(_edited(_CALIBRATION))
def test_calibration_json(edit) -> None:
    check_calibration_json(edit)


# ------------------------------------------------------------------------- tool files

def _tool_doc() -> dict:
    from assets import asset_path

    return json.loads(asset_path("tools", "applicator.json").read_text())


def check_tool(edit) -> None:
    from guidance.tracking.tools import load_tool

    doc, raw = edit
    path = _write("tool.json", doc, raw)
    tool = run_case("tool_json", path, lambda: load_tool(path))
    if tool is None:
        return
    if doc is None:
        doc = json.loads(raw)
    assert tool.name == doc["name"] and isinstance(doc["name"], str)
    assert len(tool.markers) == len(doc["markers"])
    for marker, entry in zip(tool.markers, doc["markers"], strict=True):
        assert type(entry["id"]) is int and marker.marker_id == entry["id"]
        assert _number(entry["size_mm"]) and marker.size_mm == entry["size_mm"] > 0
        np.testing.assert_array_equal(marker.corners_mm, np.asarray(entry["corners_mm"], float))
    if doc.get("tool_from_applicator") is not None:
        np.testing.assert_array_equal(tool.tool_from_applicator,
                                      np.asarray(doc["tool_from_applicator"], float))
        _rigid(tool.tool_from_applicator)
    if doc.get("tip_mm") is not None:
        np.testing.assert_array_equal(tool.tip_mm, np.asarray(doc["tip_mm"], float))


@fuzz_settings()
@given(st.data())
def test_tool_file(data) -> None:
    check_tool(data.draw(_edited(_tool_doc())))


# ---------------------------------------------------------------------- machine files

def _machine_doc() -> dict:
    from assets import asset_path

    return json.loads(asset_path("beams", "mobetron.json").read_text())


def check_machine(edit) -> None:
    from models.beams.library import read_machine_file

    doc, raw = edit
    path = _write("machine.json", doc, raw)
    machine = run_case("beam_machine_json", path, lambda: read_machine_file(path))
    if machine is None:
        return
    if doc is None:
        doc = json.loads(raw)
    for key in ("reference_applicator_mm", "virtual_source_distance_mm",
                "reference_output_cgy_per_mu"):
        assert _number(doc[key]) and getattr(machine, key) == doc[key] > 0, key
    assert machine.name == doc["machine"]
    assert sorted(machine.energies) == sorted(float(e) for e in doc["energies_mev"])
    assert machine.applicator_diameters_mm == tuple(float(d)
                                                    for d in doc["applicator_diameters_mm"])
    for energy in machine.energies.values():
        assert np.all(np.isfinite(energy.depth_mm)) and np.all(np.diff(energy.depth_mm) > 0)
        assert np.all(np.isfinite(energy.dose_percent)) and energy.dose_percent.max() > 0
    for key, factor in machine.output_factors.items():
        assert math.isfinite(factor) and factor > 0, key
    for beam in machine.commissioned.values():
        assert np.all(np.isfinite(beam.depth_mm)) and np.all(np.isfinite(beam.dose_percent))
        assert math.isfinite(beam.sigma_scale) and beam.sigma_scale > 0
        assert np.all(np.isfinite(beam.fluence)) and np.all(beam.fluence >= 0)
        assert np.all(np.isfinite(beam.fluence_radius))


@fuzz_settings()
@given(st.data())
def test_beam_machine_file(data) -> None:
    check_machine(data.draw(_edited(_machine_doc())))


# ------------------------------------------------------------------------ plan limits

def _limits_doc() -> dict:
    from assets import asset_path

    return json.loads(asset_path("plan_limits.json").read_text())


def check_plan_limits(edit) -> None:
    from guidance.treatment.dose_check import PlanLimits, load_plan_limits

    doc, raw = edit
    path = _write("plan_limits.json", doc, raw)
    limits = run_case("plan_limits_json", path, lambda: load_plan_limits(path))
    if limits is None:
        return
    if doc is None:
        doc = json.loads(raw)
    base = PlanLimits()
    sections = {"target": ("v90_green_percent", "v90_red_percent", "d90_green_percent_of_rx",
                           "d90_red_percent_of_rx"),
                "hot_spot": ("amber_percent_of_rx", "red_percent_of_rx")}
    for section, keys in sections.items():
        given_section = doc.get(section) or {}
        for key in keys:
            attr = key if section == "target" else f"hot_spot_{key}"
            value = getattr(limits, attr)
            assert math.isfinite(value) and 0 <= value <= 1000, (attr, value)
            if key in given_section:
                assert _number(given_section[key]) and value == given_section[key], attr
            else:
                assert value == getattr(base, attr)
    for organ in limits.organs:
        assert math.isfinite(organ.dmax_gy) and 0 < organ.dmax_gy <= 1000, organ
        entry = (doc.get("organs") or {}).get(organ.name)
        if entry is not None:
            assert _number(entry["dmax_gy"]) and organ.dmax_gy == entry["dmax_gy"]


@fuzz_settings()
@given(st.data())
def test_plan_limits_file(data) -> None:
    check_plan_limits(data.draw(_edited(_limits_doc())))


# ----------------------------------------------------------- plan and pose JSON files

_POSE = [[0.0, -1.0, 0.0, 10.5], [1.0, 0.0, 0.0, -20.0], [0.0, 0.0, 1.0, 300.0],
         [0.0, 0.0, 0.0, 1.0]]
_PLAN = {"patient_from_applicator": _POSE, "machine": "liac", "energy_mev": 10.0,
         "applicator_diameter_mm": 60.0, "bevel_deg": 0.0, "prescription_gy": 12.0,
         "isodose_percent": 90.0}


class _PlanCase:
    """The part of a Case that :func:`resolve_plan` reads (no stored plan)."""

    def __init__(self) -> None:
        self.patient_id = "FUZZ"
        self.structures: dict = {}
        self.plan = None


def check_plan_file(edit) -> None:
    from guidance.cli.inputs import read_transform_file
    from models.base.errors import InputError
    from models.dicom.rt_export import read_plan_file, resolve_plan

    doc, raw = edit
    path = _write("plan.json", doc, raw)
    pose = run_case("plan_pose_json", path, lambda: read_transform_file(
        path, "patient_from_applicator", option="--plan"))
    plan = run_case("plan_pose_json", path, lambda: read_plan_file(path))
    if doc is None and (pose is not None or plan is not None):
        try:
            doc = json.loads(raw)
        except ValueError:   # the text form of read_transform_file
            doc = {"patient_from_applicator": np.loadtxt(path, ndmin=2).tolist()}
    if pose is not None:
        matrix = doc["patient_from_applicator"] if isinstance(doc, dict) else doc
        np.testing.assert_array_equal(pose, np.asarray(matrix, dtype=np.float64))
        _rigid(pose)
    if plan is None:
        return
    try:
        spec = resolve_plan(_PlanCase(), plan_file=plan)
    except InputError as exc:   # a key missing: the CLI names the file and the options
        assert "plan lacks" in str(exc) or "no planned applicator pose" in str(exc), exc
        return
    _rigid(spec.patient_from_applicator)
    np.testing.assert_array_equal(spec.patient_from_applicator,
                                  np.asarray(doc["patient_from_applicator"], float))
    assert spec.machine == doc["machine"] and isinstance(doc["machine"], str)
    for key in ("energy_mev", "applicator_diameter_mm", "prescription_gy",
                "isodose_percent"):
        assert _number(doc[key]) and getattr(spec, key) == doc[key] > 0, key
    assert _number(doc["bevel_deg"]) and spec.bevel_deg == doc["bevel_deg"] >= 0
    assert spec.isodose_percent <= 100


@fuzz_settings()
@given(_edited(_PLAN))
def test_plan_and_pose_file(edit) -> None:
    check_plan_file(edit)


# ---------------------------------------------------------------------- board files

def _board_doc() -> dict:
    from assets import asset_path

    return json.loads(asset_path("boards", "charuco_7x5_30mm.json").read_text())


def check_board(edit) -> None:
    from calibration.boards import load_board

    doc, raw = edit
    path = _write("board.json", doc, raw)
    board = run_case("board_json", path, lambda: load_board(path))
    if board is None:
        return
    if doc is None:
        doc = json.loads(raw)
    assert [board.squares_x, board.squares_y] == doc["squares"]
    assert all(type(v) is int and v >= 2 for v in doc["squares"])
    assert _number(doc["square_mm"]) and board.square_mm == doc["square_mm"]
    assert _number(doc["marker_mm"]) and board.marker_mm == doc["marker_mm"]
    assert 0 < board.marker_mm < board.square_mm
    assert board.dictionary == doc["dictionary"]
    assert board.legacy_pattern is bool(doc.get("legacy_pattern", False))


@fuzz_settings()
@given(st.data())
def test_board_file(data) -> None:
    check_board(data.draw(_edited(_board_doc())))
