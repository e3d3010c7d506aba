"""The pure-Python OpenCV YAML/XML reader against OpenCV's own writer and reader."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from calibration.errors import CalibrationError
from calibration.opencv_storage import MAX_BYTES, SKIPPED, read_opencv_storage
from tests.calibration.test_io import calibration  # noqa: F401  (the fixture)


@pytest.mark.parametrize("suffix", [".yaml", ".yml", ".xml"])
def test_files_written_by_opencv_read_back_as_opencv_reads_them(tmp_path, suffix) -> None:
    rng = np.random.default_rng(7)
    for trial in range(20):
        path = tmp_path / f"m{trial}{suffix}"
        written = {f"m{k}": rng.normal(scale=10.0 ** rng.integers(-12, 12),
                                       size=tuple(rng.integers(1, 7, size=2)))
                   for k in range(4)}
        written["f32"] = rng.normal(size=(3, 2)).astype(np.float32)
        written["ints"] = rng.integers(-1000, 1000, size=(2, 5)).astype(np.int32)
        fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_WRITE)
        for key, value in written.items():
            fs.write(key, value)
        fs.write("count", int(rng.integers(-10**6, 10**6)))
        fs.write("ratio", float(rng.normal()))
        fs.write("name", "camera 1")
        fs.release()
        ours = read_opencv_storage(path)
        fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_READ)   # the independent reader
        for key in written:
            truth = fs.getNode(key).mat().astype(np.float64)
            np.testing.assert_array_equal(ours[key], truth.reshape(ours[key].shape))
            assert ours[key].shape == written[key].shape
        assert ours["count"] == int(fs.getNode("count").real())
        assert ours["ratio"] == fs.getNode("ratio").real()          # bit for bit
        assert ours["name"] == fs.getNode("name").string()
        fs.release()


def test_reading_a_calibration_never_calls_opencvs_parser(tmp_path, monkeypatch,
                                                          calibration) -> None:  # noqa: F811
    from calibration.io import load_calibration, save_calibration

    cal = calibration
    path = save_calibration(cal, tmp_path / "cam.yaml")

    def refuse(*args, **kwargs):
        raise AssertionError("cv2.FileStorage used for reading")

    monkeypatch.setattr(cv2, "FileStorage", refuse)
    back = load_calibration(path)
    np.testing.assert_array_equal(back.camera_matrix, cal.camera_matrix)


def test_an_opencv_sample_calibration_with_extra_keys_reads(tmp_path) -> None:
    path = tmp_path / "out_camera_data.yml"
    path.write_text("""%YAML:1.0
---
calibration_time: "Tue 01 Dec 2026 10:00:00 CET"
nframes: 12
image_width: 640
image_height: 480
board_width: 9
flags: 0
camera_matrix: !!opencv-matrix
   rows: 3
   cols: 3
   dt: d
   data: [ 6.5e+02, 0., 3.195e+02, 0., 6.5e+02, 2.395e+02, 0., 0., 1. ]
distortion_coefficients: !!opencv-matrix
   rows: 5
   cols: 1
   dt: d
   data: [ -0.1, 0.05, 0., 0., .Nan ]
avg_reprojection_error: 2.1e-01
grid_points: [ 0., 0., 0., 2.5e+01, 0., 0. ]
extrinsic_parameters:
   - [ 1, 2 ]
""")
    nodes = read_opencv_storage(path)
    assert nodes["calibration_time"].startswith("Tue") and nodes["nframes"] == 12
    assert nodes["camera_matrix"][0, 2] == 319.5
    assert np.isnan(nodes["distortion_coefficients"][4, 0])
    assert nodes["grid_points"][3] == 25.0
    assert nodes["extrinsic_parameters"] is SKIPPED


@pytest.mark.parametrize(("text", "says"), [
    ("image_width: 640\n", "first line must be '%YAML:1.0'"),
    ("%YAML:1.0\ncamera_matrix: !!opencv-matrix\n   rows: 2\n   cols: 2\n   dt: d\n"
     "   data: [ 1., 2., 3. ]\n", "data has 3 numbers, rows x cols = 4"),
    ("%YAML:1.0\ncamera_matrix: !!opencv-matrix\n   rows: 1\n   cols: 1\n   dt: d\n"
     "   data: [ 1.,\n", "'[' never closed"),
    ("%YAML:1.0\nm: !!opencv-matrix\n   rows: 100000\n   cols: 100000\n   dt: d\n"
     "   data: [ 1. ]\n", "too large"),
    ("%YAML:1.0\nm: !!opencv-matrix\n   rows: 1\n   cols: 1\n   dt: q\n   data: [ 1. ]\n",
     "dt 'q' is not one OpenCV depth"),
    ("%YAML:1.0\na: 1\na: 2\n", "key a given twice"),
    ("%YAML:1.0\n  a: 1\n", "unexpected indentation"),
    ("%YAML:1.0\na: \"open\n", "unterminated string"),
])
def test_malformed_yaml_is_one_line_naming_the_file(tmp_path, text, says) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(CalibrationError, match=r"bad\.yaml") as info:
        read_opencv_storage(path)
    assert says in str(info.value) and "\n" not in str(info.value)


def test_xml_with_entities_binary_and_huge_files_are_refused(tmp_path) -> None:
    bomb = tmp_path / "bomb.xml"
    bomb.write_text('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]>'
                    "<opencv_storage><n>&a;</n></opencv_storage>")
    with pytest.raises(CalibrationError, match="DOCTYPE"):
        read_opencv_storage(bomb)
    binary = tmp_path / "cam.yaml"
    binary.write_bytes(b"%YAML:1.0\n\xff\xfe\x00")
    with pytest.raises(CalibrationError, match="not a text file"):
        read_opencv_storage(binary)
    huge = tmp_path / "huge.yaml"
    with open(huge, "wb") as f:
        f.truncate(MAX_BYTES + 1)
    with pytest.raises(CalibrationError, match="too large"):
        read_opencv_storage(huge)
    wrong_root = tmp_path / "other.xml"
    wrong_root.write_text("<?xml version='1.0'?><svg></svg>")
    with pytest.raises(CalibrationError, match="<opencv_storage>"):
        read_opencv_storage(wrong_root)


@pytest.mark.parametrize("misspelt", ["cls", "rws"])
def test_a_misspelt_matrix_key_is_refused_every_time_in_one_process(tmp_path, calibration,  # noqa: F811
                                                                      misspelt) -> None:
    """``cls: 3`` for ``cols: 3`` made OpenCV 5.1's FileNode.mat() corrupt the heap (the
    process aborted a few reads later); read 300 times here, it is one line each time."""
    from calibration.io import load_calibration, save_calibration

    path = save_calibration(calibration, tmp_path / "cam.yaml")
    right = "cols" if misspelt == "cls" else "rows"
    text = path.read_text().replace(f"   {right}: 3", f"   {misspelt}: 3", 1)
    assert text != path.read_text()
    path.write_text(text)
    for _ in range(300):
        with pytest.raises(CalibrationError, match=f"without {right}") as info:
            load_calibration(path)
        assert "\n" not in str(info.value)
