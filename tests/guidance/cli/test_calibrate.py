"""``iort calibrate camera|pivot|hand-eye`` end to end on synthetic data."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from calibration.boards import load_board
from calibration.io import load_calibration
from calibration.synthetic import default_camera, random_board_poses, render_view
from guidance.cli.main import main


@pytest.fixture(scope="module")
def board_images():
    board = load_board("charuco_7x5_30mm")
    camera = default_camera((640, 360))
    gen = np.random.default_rng(5)
    poses = random_board_poses(board, camera, 10, rng=gen, distance_mm=(300, 420))
    return camera, [render_view(board, camera, p, rng=gen) for p in poses]


@pytest.fixture
def image_folder(tmp_path, board_images):
    folder = tmp_path / "views"
    folder.mkdir()
    for i, image in enumerate(board_images[1]):
        cv2.imwrite(str(folder / f"v{i:02d}.png"), image)
    return folder


def test_camera_from_image_folder(tmp_path, board_images, image_folder, capsys):
    camera, _images = board_images
    folder = image_folder
    out = tmp_path / "cam.json"
    assert main(["calibrate", "camera", "--images", str(folder), "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert {"camera_matrix", "dist_coeffs", "image_size", "rms_px", "per_view_px"} <= set(data)
    assert data["image_size"] == [640, 360]
    calib = load_calibration(out)
    np.testing.assert_allclose(calib.camera_matrix[0, 0], camera.camera_matrix[0, 0], rtol=0.01)
    text = capsys.readouterr().out
    assert "v00.png" in text and "coverage" in text


def test_camera_from_video_to_yaml(tmp_path, board_images):
    camera, images = board_images
    video = tmp_path / "board.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (640, 360))
    assert writer.isOpened()
    for image in images:
        writer.write(cv2.cvtColor(image, cv2.COLOR_GRAY2BGR))
    writer.release()
    out = tmp_path / "cam.yaml"
    assert main(["calibrate", "camera", "--video", str(video), "--squares", "7x5",
                 "--square-mm", "30", "--marker-mm", "22", "--out", str(out)]) == 0
    calib = load_calibration(out)
    assert calib.image_size == (640, 360)
    np.testing.assert_allclose(calib.camera_matrix[0, 0], camera.camera_matrix[0, 0], rtol=0.02)


def test_camera_wrong_dictionary_is_one_clear_line(tmp_path, image_folder, capsys):
    folder = image_folder
    code = main(["calibrate", "camera", "--images", str(folder), "--squares", "7x5",
                 "--square-mm", "30", "--marker-mm", "22", "--dictionary", "DICT_4X4_50",
                 "--out", str(tmp_path / "c.json")])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("iort: error: cannot calibrate from 10 image(s)")
    assert "--dictionary" in err
    assert not (tmp_path / "c.json").exists()
    assert main(["calibrate", "camera", "--images", str(folder), "--squares", "7x5",
                 "--out", str(tmp_path / "c.json")]) == 2
    assert "must be given together" in capsys.readouterr().err


def _pivot_poses(rng, n=30, noise_mm=0.2):
    tip = np.array([0.0, -120.0, -90.0])
    pivot = np.array([20.0, 10.0, 350.0])
    poses = np.tile(np.eye(4), (n, 1, 1))
    for pose in poses:
        rot = cv2.Rodrigues(np.radians(rng.uniform(-25, 25, 3)))[0]
        pose[:3, :3] = rot
        pose[:3, 3] = pivot - rot @ tip + rng.normal(0, noise_mm, 3)
    return tip, poses


def test_pivot_command(tmp_path, rng, capsys):
    tip, poses = _pivot_poses(rng)
    path = tmp_path / "poses.csv"
    np.savetxt(path, poses.reshape(len(poses), 16), delimiter=",")
    out = tmp_path / "tip.json"
    assert main(["calibrate", "pivot", "--poses", str(path), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert np.linalg.norm(np.array(result["tip_mm"]) - tip) < 0.5
    assert "RMS residual" in capsys.readouterr().out


def test_pivot_command_refuses_translations(tmp_path, rng, capsys):
    _tip, poses = _pivot_poses(rng)
    poses[:, :3, :3] = np.eye(3)
    path = tmp_path / "poses.json"
    path.write_text(json.dumps({"tracker_from_tool": poses.tolist()}))
    assert main(["calibrate", "pivot", "--poses", str(path)]) == 2
    assert "rotate only 0.0 deg" in capsys.readouterr().err


def test_hand_eye_command(tmp_path, rng, capsys):
    x = np.eye(4)
    x[:3, :3] = cv2.Rodrigues(np.radians([5.0, 80.0, -10.0]))[0]
    x[:3, 3] = [30.0, 0.0, 60.0]
    base_from_target = np.eye(4)
    base_from_target[:3, 3] = [400.0, 0.0, 0.0]
    grip, cam = [], []
    for _ in range(10):
        g = np.eye(4)
        g[:3, :3] = cv2.Rodrigues(np.radians(rng.uniform(-40, 40, 3)))[0]
        g[:3, 3] = rng.uniform(-100, 100, 3)
        grip.append(g)
        cam.append(np.linalg.inv(x) @ np.linalg.inv(g) @ base_from_target)
    path = tmp_path / "he.json"
    path.write_text(json.dumps({"base_from_gripper": np.array(grip).tolist(),
                                "camera_from_target": np.array(cam).tolist()}))
    out = tmp_path / "x.json"
    assert main(["calibrate", "hand-eye", "--poses", str(path), "--method", "all",
                 "--out", str(out)]) == 0
    got = np.array(json.loads(out.read_text())["gripper_from_camera"])
    np.testing.assert_allclose(got, x, atol=1e-6)
    text = capsys.readouterr().out
    assert "tsai" in text and "daniilidis" in text


def test_missing_camera_and_video_are_clear_errors(tmp_path, capsys):
    assert main(["calibrate", "camera", "--camera", "99", "--out", str(tmp_path / "c.json")]) == 2
    assert "--camera 99: camera cannot be opened" in capsys.readouterr().err
    assert main(["calibrate", "camera", "--video", str(tmp_path / "none.mp4"),
                 "--out", str(tmp_path / "c.json")]) == 2
    assert "none.mp4: file not found" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["calibrate", "camera", "--images", str(empty),
                 "--out", str(tmp_path / "c.json")]) == 2
    assert "no .png" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["calibrate", "camera", "--camera", "2147483648"],
                                  ["run", "phantom", "--source", "webcam:99999999999",
                                   "--calibration", "x.json"]])
def test_a_huge_camera_index_is_a_user_error_not_a_crash(tmp_path, capsys, argv) -> None:
    """Found by the fuzzer: the index reached cv2.VideoCapture and crashed the process."""
    from guidance.cli.main import main

    out = ["--out", str(tmp_path / "cam.json")] if argv[0] == "calibrate" else []
    assert main([*argv, *out]) == 2
    assert "camera index is a whole number from 0 to 1023" in capsys.readouterr().err
