"""Calibration files: JSON and OpenCV YAML/XML round trips, strict reading of bad files."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from calibration.camera import CameraCalibration
from calibration.errors import CalibrationError
from calibration.io import load_calibration, load_calibration_for_frames, save_calibration


@pytest.fixture
def calibration() -> CameraCalibration:
    k = np.array([[912.5, 0.0, 641.25], [0.0, 910.75, 358.5], [0.0, 0.0, 1.0]])
    return CameraCalibration(
        camera_matrix=k, dist_coeffs=np.array([-0.11, 0.08, 0.0007, -0.0004, -0.02]),
        image_size=(1280, 720), rms_px=0.071, per_view_px=np.array([0.05, 0.07, 0.09]),
        intrinsics_std_px=np.array([0.6, 0.55, 0.7, 0.5]), coverage_percent=77.0,
        coverage_map=np.arange(48).reshape(6, 8), view_names=("a.png", "b.png", "c.png"),
        board={"name": "charuco_7x5_30mm"})


def _assert_same(a: CameraCalibration, b: CameraCalibration) -> None:
    np.testing.assert_allclose(a.camera_matrix, b.camera_matrix, rtol=0, atol=1e-12)
    np.testing.assert_allclose(a.dist_coeffs, b.dist_coeffs, rtol=0, atol=1e-12)
    np.testing.assert_allclose(a.per_view_px, b.per_view_px, rtol=0, atol=1e-12)
    np.testing.assert_allclose(a.intrinsics_std_px, b.intrinsics_std_px, rtol=0, atol=1e-12)
    assert a.image_size == b.image_size
    assert a.rms_px == pytest.approx(b.rms_px, abs=1e-12)


@pytest.mark.parametrize("suffix", [".json", ".yaml", ".yml", ".xml"])
def test_round_trip(tmp_path, calibration, suffix):
    path = save_calibration(calibration, tmp_path / f"cam{suffix}")
    _assert_same(calibration, load_calibration(path))


def test_json_keeps_coverage_and_names(tmp_path, calibration):
    loaded = load_calibration(save_calibration(calibration, tmp_path / "cam.json"))
    np.testing.assert_array_equal(loaded.coverage_map, calibration.coverage_map)
    assert loaded.view_names == calibration.view_names
    assert loaded.board == {"name": "charuco_7x5_30mm"}


def test_json_keeps_the_lens_model_and_edge_uncertainty(tmp_path, calibration):
    from dataclasses import replace

    limited = replace(calibration, distortion_model="k1 k2 p1 p2 (k3 fixed at 0: board "
                      "corners in 31 % of the image, < 60 %)", edge_uncertainty_px=12.5)
    loaded = load_calibration(save_calibration(limited, tmp_path / "cam.json"))
    assert loaded.distortion_model == limited.distortion_model
    assert loaded.edge_uncertainty_px == 12.5
    assert any("k3 fixed" in w for w in loaded.warnings())
    data = json.loads((tmp_path / "cam.json").read_text())
    data["edge_uncertainty_px"] = -3
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(CalibrationError, match="edge_uncertainty_px"):
        load_calibration(tmp_path / "bad.json")


def test_yaml_is_readable_by_plain_filestorage(tmp_path, calibration):
    path = save_calibration(calibration, tmp_path / "cam.yaml")
    fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_READ)
    np.testing.assert_allclose(fs.getNode("camera_matrix").mat(), calibration.camera_matrix,
                               atol=1e-12)
    assert int(fs.getNode("image_width").real()) == 1280
    assert fs.getNode("distortion_coefficients").mat().shape == (1, 5)
    fs.release()


def _write_json(tmp_path, calibration, **changes):
    path = save_calibration(calibration, tmp_path / "cam.json")
    data = json.loads(path.read_text())
    for key, value in changes.items():
        if value is KeyError:
            del data[key]
        else:
            data[key] = value
    text = json.dumps(data, allow_nan=True)
    path.write_text(text)
    return path


@pytest.mark.parametrize(("changes", "match"), [
    ({"image_size": KeyError}, r"missing field\(s\) image_size"),
    ({"camera_matrix": KeyError, "rms_px": KeyError}, r"camera_matrix, rms_px"),
    ({"image_size": [640, 360]}, r"principal point .* outside the image size 640x360"),
    ({"image_size": [12800, 7200]}, r"implausible .*wrong image_size"),
    ({"image_size": [1280]}, r"image_size must be \[width, height\]"),
    ({"image_size": [1280.5, 720]}, r"two whole numbers from 1 to 100000 px"),
    ({"dist_coeffs": [0.1, 0.2, 0.3]}, r"dist_coeffs has 3 values"),
    ({"camera_matrix": [[900, 0, 640], [0, 900, 360]]}, r"camera_matrix must have shape 3x3"),
    ({"camera_matrix": [[-900, 0, 640], [0, 900, 360], [0, 0, 1]]}, r"focal lengths"),
    ({"rms_px": "low"}, r"rms_px must be a number"),
    ({"format": "something-else"}, r"format 'something-else'"),
    ({"intrinsics_std_px": [0.5, 0.5]}, r"intrinsics_std_px must be 4 non-negative numbers"),
    ({"dist_coeffs": [1e30, 0, 0, 0, 0]}, r"field dist_coeffs\[0\]: .*less than or equal"),
    ({"dist_coeffs": [0, 0, 0, 0, -1e308]}, r"field dist_coeffs\[4\]: .*greater than"),
    ({"dist_coeffs": [0, 0, 0, 0, "NaN"]}, r"field dist_coeffs\[4\]: .*valid number"),
    ({"camera_matrix": [[900, 1e308, 640], [0, 900, 360], [0, 0, 1]]},
     r"field camera_matrix\[0\]\[1\]"),
    ({"camera_matrix": [[900, 5000, 640], [0, 900, 360], [0, 0, 1]]}, r"skew"),
    ({"rms_px": 1e308}, r"field rms_px"),
    ({"version": None}, r"field version must be a whole number"),
    ({"coverage_percent": 300}, r"field coverage_percent"),
])
def test_malformed_json_names_file_and_field(tmp_path, calibration, changes, match):
    path = _write_json(tmp_path, calibration, **changes)
    with pytest.raises(CalibrationError, match=match) as info:
        load_calibration(path)
    assert "cam.json" in str(info.value)


def test_nan_in_json_is_refused(tmp_path, calibration):
    path = _write_json(tmp_path, calibration)
    path.write_text(path.read_text().replace("912.5", "NaN"))
    with pytest.raises(CalibrationError, match=r"cam.json: contains NaN"):
        load_calibration(path)


def test_nan_in_yaml_is_refused(tmp_path, calibration):
    path = save_calibration(calibration, tmp_path / "cam.yaml")
    path.write_text(path.read_text().replace("912.5", ".nan"))
    with pytest.raises(CalibrationError, match=r"cam.yaml: camera_matrix contains NaN"):
        load_calibration(path)


def test_yaml_missing_key_and_garbage(tmp_path, calibration):
    path = tmp_path / "partial.yaml"
    fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_WRITE)
    fs.write("camera_matrix", calibration.camera_matrix)
    fs.release()
    with pytest.raises(CalibrationError, match=r"partial.yaml: missing field\(s\) "
                                               r"distortion_coefficients, image_width"):
        load_calibration(path)
    garbage = tmp_path / "garbage.yaml"
    garbage.write_text("%YAML 1.2\n---\ncamera_matrix: [1, 2\n")
    with pytest.raises(CalibrationError, match=r"garbage.yaml"):
        load_calibration(garbage)


def test_missing_file_and_unknown_type(tmp_path, calibration):
    with pytest.raises(CalibrationError, match="not found; create one with"):
        load_calibration(tmp_path / "nope.json")
    with pytest.raises(CalibrationError, match=r"unknown calibration file type '.txt'"):
        save_calibration(calibration, tmp_path / "cam.txt")


def test_invalid_calibration_is_never_written(tmp_path, calibration):
    bad = CameraCalibration(calibration.camera_matrix, calibration.dist_coeffs, (1280, 720),
                            float("nan"), calibration.per_view_px)
    with pytest.raises(CalibrationError, match="rms_px"):
        save_calibration(bad, tmp_path / "bad.json")
    assert not (tmp_path / "bad.json").exists()


def test_live_loop_refuses_a_calibration_for_other_frames(tmp_path, calibration):
    path = save_calibration(calibration, tmp_path / "cam.json")
    loaded = load_calibration_for_frames(path, np.zeros((720, 1280, 3), np.uint8))
    assert loaded.image_size == (1280, 720)
    with pytest.raises(CalibrationError, match=r"cam\.json: calibrated for 1280x720 px frames "
                                               r"but the camera delivers 1920x1080 px"):
        load_calibration_for_frames(path, np.zeros((1080, 1920, 3), np.uint8))


def test_absurd_distortion_in_yaml_is_refused(tmp_path, calibration):
    path = save_calibration(calibration, tmp_path / "cam.yaml")
    fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_WRITE)
    fs.write("image_width", 1280)
    fs.write("image_height", 720)
    fs.write("camera_matrix", np.asarray(calibration.camera_matrix, np.float64))
    fs.write("distortion_coefficients", np.array([[0.1, 1e30, 0, 0, 0]]))
    fs.write("avg_reprojection_error", 0.1)
    fs.release()
    with pytest.raises(CalibrationError, match=r"cam\.yaml: dist_coeffs\[1\] = 1e\+30"):
        load_calibration(path)


@pytest.mark.parametrize("drop", ["rows", "cols", "dt"])
def test_yaml_matrix_without_its_layout_is_one_line(tmp_path, calibration, drop):
    path = save_calibration(calibration, tmp_path / "cam.yaml")
    lines = path.read_text().splitlines()
    start = next(n for n, line in enumerate(lines) if line.startswith("camera_matrix"))
    end = next(n for n in range(start + 1, len(lines)) if lines[n].strip().startswith(drop))
    del lines[end]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(CalibrationError, match=r"cam\.yaml: field camera_matrix is not a "
                                               r"readable OpenCV matrix") as info:
        load_calibration(path)
    assert "\n" not in str(info.value)


def test_mutated_calibration_json_is_refused_in_one_line_never_a_traceback(tmp_path,
                                                                           calibration):
    from tests.conftest import json_mutants

    data = json.loads(save_calibration(calibration, tmp_path / "cam.json").read_text())
    refused = 0
    for what, mutant in json_mutants(data, 400, seed=23):
        (tmp_path / "m.json").write_text(json.dumps(mutant))
        try:
            load_calibration(tmp_path / "m.json")
        except CalibrationError as exc:
            assert "\n" not in str(exc), what
            refused += 1
    assert refused >= 300


def test_opencv_file_whose_top_node_is_not_a_map_is_refused(tmp_path) -> None:
    """Found by the fuzzer: cv2.error (isMap assertion) escaped the YAML/XML reader."""
    path = tmp_path / "camera.yaml"
    path.write_text("%YAML:1.0\n---\n- 1\n- 2\n")
    with pytest.raises(CalibrationError, match=r"camera\.yaml"):
        load_calibration(path)


def test_an_absurd_image_size_is_refused(tmp_path, calibration) -> None:
    """Found by the fuzzer: an image height of 1.8e19 px was accepted."""
    path = save_calibration(calibration, tmp_path / "camera.json")
    data = json.loads(path.read_text())
    data["image_size"] = [data["image_size"][0], 1.8446744073709552e19]
    path.write_text(json.dumps(data))
    with pytest.raises(CalibrationError, match=r"image_size.*100000 px"):
        load_calibration(path)
