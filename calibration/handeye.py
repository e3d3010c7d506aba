"""Hand-eye calibration ``A X = X B`` (Tsai–Lenz, Park–Martin, Daniilidis).

OpenCV 5 dropped ``cv2.calibrateHandEye``; this module re-implements it with **the same
conventions** as OpenCV 4's ``calibrateHandEye(R_gripper2base, t_gripper2base,
R_target2cam, t_target2cam) -> R_cam2gripper, t_cam2gripper``:

=====================  ==========================  =====================================
OpenCV 4 argument      here (4x4, mm)              meaning
=====================  ==========================  =====================================
R/t_gripper2base       ``base_from_gripper[i]``    gripper (hand, tracked body) pose in
                                                   the base (robot/tracker) frame
R/t_target2cam         ``camera_from_target[i]``   calibration target pose in the camera
R/t_cam2gripper        ``gripper_from_camera``     the unknown X (result)
=====================  ==========================  =====================================

Motions are formed for every pair ``i < j`` exactly as OpenCV does:
``A_ij = inv(base_from_gripper[j]) @ base_from_gripper[i]`` (gripper_j_from_gripper_i) and
``B_ij = camera_from_target[j] @ inv(camera_from_target[i])`` (camera_j_from_camera_i), and
``A_ij @ X = X @ B_ij``.

*Eye-in-hand* (camera rigidly on the gripper, target fixed, e.g. a marker plate on a
tracked camera): pass poses as above; the result is ``gripper_from_camera``.
*Eye-to-hand* (camera fixed, target on the gripper, e.g. a marker on the applicator seen by
a fixed camera): pass ``gripper_from_base`` (the inverses) as ``base_from_gripper``; the
result is then ``base_from_camera`` — the same trick the OpenCV documentation gives.

Methods
-------
``tsai``        R. Tsai, R. Lenz, "A new technique for fully autonomous and efficient 3D
                robotics hand/eye calibration", IEEE T-RA 5(3) 1989, doi:10.1109/70.34770.
``park``        F. Park, B. Martin, "Robot sensor calibration: solving AX = XB on the
                Euclidean group", IEEE T-RA 10(5) 1994, doi:10.1109/70.326576.
``daniilidis``  K. Daniilidis, "Hand-eye calibration using dual quaternions", IJRR 18(3)
                1999, doi:10.1177/02783649922066213.

Tsai and Park solve rotation first and then translation from
``(R_A - I) t_X = R_X t_B - t_A`` by linear least squares; Daniilidis solves both at once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np

from calibration.errors import CalibrationError
from calibration.validation import as_transforms
from models.base.transforms import rotation_angle_deg

log = logging.getLogger(__name__)

METHODS = ("tsai", "park", "daniilidis")


@dataclass(frozen=True)
class HandEyeResult:
    """Result of :func:`calibrate_hand_eye`.

    Attributes
    ----------
    gripper_from_camera : (4, 4) float64
        X (OpenCV's cam2gripper), mm; ``base_from_camera`` in the eye-to-hand set-up.
    method : str
        The method used.
    rotation_rms_deg : float
        RMS over motion pairs of the angle of ``inv(A X) @ (X B)``, degrees.
    translation_rms_mm : float
        RMS over motion pairs of the translation difference of ``A X`` and ``X B``, mm.
    n_pairs : int
        Motion pairs used.
    """

    gripper_from_camera: np.ndarray
    method: str
    rotation_rms_deg: float
    translation_rms_mm: float
    n_pairs: int


def _inv(t: np.ndarray) -> np.ndarray:
    out = np.zeros_like(t)
    rot_t = np.swapaxes(t[..., :3, :3], -1, -2)
    out[..., :3, :3] = rot_t
    out[..., :3, 3] = -np.einsum("...ij,...j->...i", rot_t, t[..., :3, 3])
    out[..., 3, 3] = 1.0
    return out


def _skew(v: np.ndarray) -> np.ndarray:
    return np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])


def _rotvec(rot: np.ndarray) -> np.ndarray:
    return cv2.Rodrigues(np.ascontiguousarray(rot))[0].ravel()


def _project_rotation(m: np.ndarray) -> np.ndarray:
    u, _s, vt = np.linalg.svd(m)
    d = np.sign(np.linalg.det(u @ vt))
    return u @ np.diag([1.0, 1.0, d]) @ vt


def motion_pairs(base_from_gripper: np.ndarray,
                 camera_from_target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(P, 4, 4) relative motions ``A`` (gripper) and ``B`` (camera) for all pairs i < j."""
    i, j = np.triu_indices(len(base_from_gripper), k=1)
    a = _inv(base_from_gripper[j]) @ base_from_gripper[i]
    b = camera_from_target[j] @ _inv(camera_from_target[i])
    return a, b


def _translation(a: np.ndarray, b: np.ndarray, rot_x: np.ndarray) -> np.ndarray:
    lhs = (a[:, :3, :3] - np.eye(3)).reshape(-1, 3)
    rhs = (np.einsum("ij,pj->pi", rot_x, b[:, :3, 3]) - a[:, :3, 3]).reshape(-1)
    return np.linalg.lstsq(lhs, rhs, rcond=None)[0]


def _rotation_tsai(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # Modified Rodrigues vectors P = 2 sin(theta/2) * axis (Tsai & Lenz 1989, eqs. 9-12).
    def modified(rot: np.ndarray) -> np.ndarray:
        rv = _rotvec(rot)
        theta = np.linalg.norm(rv)
        return np.zeros(3) if theta < 1e-12 else 2.0 * np.sin(theta / 2.0) * rv / theta

    lhs, rhs = [], []
    for ai, bi in zip(a, b, strict=True):
        pa, pb = modified(ai[:3, :3]), modified(bi[:3, :3])
        lhs.append(_skew(pa + pb))
        rhs.append(pb - pa)
    prime = np.linalg.lstsq(np.vstack(lhs), np.concatenate(rhs), rcond=None)[0]
    p = 2.0 * prime / np.sqrt(1.0 + prime @ prime)
    norm2 = p @ p
    rot = ((1.0 - norm2 / 2.0) * np.eye(3)
           + 0.5 * (np.outer(p, p) + np.sqrt(max(4.0 - norm2, 0.0)) * _skew(p)))
    return _project_rotation(rot)


def _rotation_park(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # theta_X = (M^T M)^(-1/2) M^T with M = sum beta_i alpha_i^T (Park & Martin 1994, eq. 13);
    # written as the orthogonal polar factor of M^T.
    m = np.zeros((3, 3))
    for ai, bi in zip(a, b, strict=True):
        m += np.outer(_rotvec(bi[:3, :3]), _rotvec(ai[:3, :3]))
    return _project_rotation(m.T)


def _quat(rot: np.ndarray) -> np.ndarray:
    rv = _rotvec(rot)
    theta = np.linalg.norm(rv)
    axis = rv / theta if theta > 1e-12 else np.zeros(3)
    return np.concatenate([[np.cos(theta / 2.0)], np.sin(theta / 2.0) * axis])


def _qmul(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    return np.concatenate([[p[0] * q[0] - p[1:] @ q[1:]],
                           p[0] * q[1:] + q[0] * p[1:] + np.cross(p[1:], q[1:])])


def _dual_quat(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    q = _quat(t[:3, :3])  # scalar part >= 0 (angle in [0, pi])
    return q, 0.5 * _qmul(np.concatenate([[0.0], t[:3, 3]]), q)


def _solve_daniilidis(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # Stack the 6x8 blocks of Daniilidis 1999 eq. 31 and take the 2-D null space.
    blocks = []
    for ai, bi in zip(a, b, strict=True):
        qa, qa_d = _dual_quat(ai)
        qb, qb_d = _dual_quat(bi)
        s = np.zeros((6, 8))
        s[:3, 0] = qa[1:] - qb[1:]
        s[:3, 1:4] = _skew(qa[1:] + qb[1:])
        s[3:, 0] = qa_d[1:] - qb_d[1:]
        s[3:, 1:4] = _skew(qa_d[1:] + qb_d[1:])
        s[3:, 4] = qa[1:] - qb[1:]
        s[3:, 5:8] = _skew(qa[1:] + qb[1:])
        blocks.append(s)
    _u, _s, vt = np.linalg.svd(np.vstack(blocks))
    v7, v8 = vt[-2], vt[-1]
    u1, d1, u2, d2 = v7[:4], v7[4:], v8[:4], v8[4:]
    coeff = [u1 @ d1, u1 @ d2 + u2 @ d1, u2 @ d2]
    roots = np.roots(coeff) if abs(coeff[0]) > 1e-15 else np.array([-coeff[2] / coeff[1]])
    roots = np.real(roots[np.abs(np.imag(roots)) < 1e-9])
    if roots.size == 0:
        raise CalibrationError("hand-eye (daniilidis): no real solution; the motions are "
                               "degenerate — use rotations about at least two different axes")
    values = [s * s * (u1 @ u1) + 2 * s * (u1 @ u2) + u2 @ u2 for s in roots]
    k = int(np.argmax(values))
    lam2 = 1.0 / np.sqrt(values[k])
    q = roots[k] * lam2 * v7 + lam2 * v8
    real, dual = q[:4], q[4:]
    rot = cv2.Rodrigues(2.0 * np.arccos(np.clip(real[0], -1, 1))
                        * (real[1:] / max(np.linalg.norm(real[1:]), 1e-15)))[0]
    t_quat = 2.0 * _qmul(dual, real * np.array([1.0, -1.0, -1.0, -1.0]))
    out = np.eye(4)
    out[:3, :3] = _project_rotation(rot)
    out[:3, 3] = t_quat[1:]
    return out


def hand_eye_residuals(a: np.ndarray, b: np.ndarray,
                       x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pair rotation (deg) and translation (mm) mismatch between ``A X`` and ``X B``."""
    left = a @ x
    right = x @ b
    rel = np.einsum("pji,pjk->pik", left[:, :3, :3], right[:, :3, :3])
    angles = np.array([rotation_angle_deg(r) for r in rel])
    return angles, np.linalg.norm(left[:, :3, 3] - right[:, :3, 3], axis=1)


def calibrate_hand_eye(base_from_gripper: np.ndarray, camera_from_target: np.ndarray, *,
                       method: str = "park",
                       min_rotation_deg: float = 5.0) -> HandEyeResult:
    """Solve ``A X = X B`` for ``X = gripper_from_camera`` (OpenCV 4 conventions).

    Parameters
    ----------
    base_from_gripper : (N, 4, 4) array
        Gripper (tracked body) poses in the base frame, mm (OpenCV ``gripper2base``).
    camera_from_target : (N, 4, 4) array
        Target poses in the camera frame at the same instants, mm (OpenCV ``target2cam``).
    method : {"park", "tsai", "daniilidis"}
        Solver (see module docstring).
    min_rotation_deg : float
        Refuse input whose largest relative gripper rotation is below this (the rotation
        axis of X would be unobservable).

    Returns
    -------
    HandEyeResult

    Raises
    ------
    CalibrationError
        Mismatched pose counts, fewer than 3 poses, too little rotation, or all relative
        rotations about (nearly) one axis.
    """
    if method not in METHODS:
        raise CalibrationError(f"hand-eye method {method!r} unknown; use one of "
                               f"{', '.join(METHODS)}")
    grip = as_transforms(base_from_gripper, name="base_from_gripper")
    cam = as_transforms(camera_from_target, name="camera_from_target")
    if len(grip) != len(cam):
        raise CalibrationError(f"base_from_gripper has {len(grip)} poses but camera_from_target "
                               f"has {len(cam)}; they must be recorded at the same instants")
    if len(grip) < 3:
        raise CalibrationError(f"hand-eye calibration needs at least 3 poses (better 10+), "
                               f"got {len(grip)}")
    a, b = motion_pairs(grip, cam)
    axes = np.array([_rotvec(r) for r in a[:, :3, :3]])
    angles_deg = np.degrees(np.linalg.norm(axes, axis=1))
    if angles_deg.max() < min_rotation_deg:
        raise CalibrationError(f"the gripper rotates at most {angles_deg.max():.1f} deg between "
                               f"poses (need >= {min_rotation_deg:g}); move it through larger "
                               f"rotations about different axes")
    usable = axes[angles_deg > 0.5 * min_rotation_deg]
    units = usable / np.linalg.norm(usable, axis=1, keepdims=True)
    spread = np.linalg.svd(units, compute_uv=False)
    if len(spread) < 2 or spread[1] < 0.05 * spread[0]:
        raise CalibrationError("all gripper rotations are about (nearly) one axis, so X is not "
                               "determined; rotate about at least two non-parallel axes")
    if method == "daniilidis":
        x = _solve_daniilidis(a, b)
    else:
        rot_x = _rotation_tsai(a, b) if method == "tsai" else _rotation_park(a, b)
        x = np.eye(4)
        x[:3, :3] = rot_x
        x[:3, 3] = _translation(a, b, rot_x)
    rot_err, trans_err = hand_eye_residuals(a, b, x)
    result = HandEyeResult(gripper_from_camera=x, method=method,
                           rotation_rms_deg=float(np.sqrt(np.mean(rot_err ** 2))),
                           translation_rms_mm=float(np.sqrt(np.mean(trans_err ** 2))),
                           n_pairs=len(a))
    log.info("hand-eye %s: %d pairs, residual %.3f deg / %.3f mm", method, len(a),
             result.rotation_rms_deg, result.translation_rms_mm)
    return result
