"""Pose files for pivot and hand-eye calibration."""

from __future__ import annotations

import json

import numpy as np
import pytest

from calibration.errors import CalibrationError
from calibration.pose_files import load_poses


@pytest.fixture
def poses() -> np.ndarray:
    out = np.tile(np.eye(4), (3, 1, 1))
    out[:, :3, 3] = [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    out[1, :3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]
    return out


def test_all_layouts_read_the_same_poses(tmp_path, poses):
    (tmp_path / "p.json").write_text(json.dumps({"tracker_from_tool": poses.tolist()}))
    (tmp_path / "list.json").write_text(json.dumps(poses.tolist()))
    np.savetxt(tmp_path / "p.csv", poses.reshape(3, 16), delimiter=",",
               header="m00,m01,...", comments="")
    np.savetxt(tmp_path / "p.txt", poses[:, :3, :].reshape(3, 12))
    np.save(tmp_path / "p.npy", poses)
    for name in ("p.json", "list.json", "p.csv", "p.txt", "p.npy"):
        got = load_poses(tmp_path / name, field="tracker_from_tool")
        np.testing.assert_allclose(got, poses, atol=1e-12, err_msg=name)


def test_bad_pose_files_name_the_problem(tmp_path, poses):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"other": poses.tolist()}))
    with pytest.raises(CalibrationError, match="expected field 'tracker_from_tool'"):
        load_poses(path, field="tracker_from_tool")
    bad = poses.copy()
    bad[2, 0, 0] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(CalibrationError, match=r"nan\.npy contains NaN"):
        load_poses(tmp_path / "nan.npy")
    (tmp_path / "short.csv").write_text("1,2,3\n4,5,6\n")
    with pytest.raises(CalibrationError, match=r"16 \(4x4\) or 12 \(3x4\) numbers"):
        load_poses(tmp_path / "short.csv")
    with pytest.raises(CalibrationError, match="not found"):
        load_poses(tmp_path / "none.json")


@pytest.mark.parametrize("translation_mm", [1e308, 3e38, -1e6])
def test_absurd_translation_is_refused(tmp_path, poses, translation_mm):
    poses[1, 0, 3] = translation_mm
    path = tmp_path / "poses.json"
    path.write_text(json.dumps(poses.tolist()))
    with pytest.raises(CalibrationError, match=r"poses\.json\[1\]: translation .* beyond"):
        load_poses(path)
