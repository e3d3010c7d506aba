"""Regenerate ``handeye_opencv4.json``: reference results of OpenCV 4's ``calibrateHandEye``.

OpenCV 5 no longer has ``calibrateHandEye``; run this in a separate environment with
``opencv-python-headless==4.10.0.84`` and numpy, from this folder:
``python make_handeye_opencv4.py``. The test compares ``calibration.handeye`` with it.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np


def transform(rotvec_deg, translation_mm) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3] = cv2.Rodrigues(np.radians(np.asarray(rotvec_deg, float)))[0]
    out[:3, 3] = translation_mm
    return out


def main() -> None:
    rng = np.random.default_rng(424242)
    x = transform([10, -25, 95], [40, -15, 80])
    base_from_target = transform([180, 0, 20], [500, 100, -50])
    grip, cam = [], []
    for _ in range(15):
        g = transform(rng.uniform(-40, 40, 3),
                      np.array([400.0, 0, 300]) + rng.uniform(-100, 100, 3))
        c = np.linalg.inv(x) @ np.linalg.inv(g) @ base_from_target
        grip.append(g @ transform(rng.normal(0, 0.05, 3), rng.normal(0, 0.15, 3)))
        cam.append(transform(rng.normal(0, 0.1, 3), rng.normal(0, 0.3, 3)) @ c)
    grip, cam = np.array(grip), np.array(cam)
    out = {"opencv_version": cv2.__version__,
           "description": "15 noisy eye-in-hand poses (seed 424242) and OpenCV 4 "
                          "calibrateHandEye results (cam2gripper as 4x4)",
           "base_from_gripper": grip.tolist(), "camera_from_target": cam.tolist(),
           "truth_gripper_from_camera": x.tolist(), "opencv": {}}
    for name, flag in [("tsai", cv2.CALIB_HAND_EYE_TSAI), ("park", cv2.CALIB_HAND_EYE_PARK),
                       ("daniilidis", cv2.CALIB_HAND_EYE_DANIILIDIS)]:
        rot, t = cv2.calibrateHandEye(grip[:, :3, :3], grip[:, :3, 3], cam[:, :3, :3],
                                      cam[:, :3, 3], method=flag)
        m = np.eye(4)
        m[:3, :3] = rot
        m[:3, 3] = t.ravel()
        out["opencv"][name] = m.tolist()
    path = Path(__file__).with_name("handeye_opencv4.json")
    path.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
