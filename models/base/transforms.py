"""Rigid transforms as 4x4 float64 arrays named ``a_from_b``.

``a_from_b`` maps points given in frame ``b`` to frame ``a``; compose by reading the names:
``a_from_c = a_from_b @ b_from_c``. Translations are in mm, angles in degrees or radians
as the name says.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from models.base.validation import as_array, as_points, as_transform


def make_transform(rotation: np.ndarray | None = None,
                   translation_mm: np.ndarray | None = None) -> np.ndarray:
    """Build a 4x4 transform from a 3x3 rotation and a translation (mm).

    Examples
    --------
    >>> make_transform(translation_mm=[1, 2, 3])[:3, 3]
    array([1., 2., 3.])
    """
    out = np.eye(4)
    if rotation is not None:
        out[:3, :3] = as_array(rotation, name="rotation", shape=(3, 3))
    if translation_mm is not None:
        out[:3, 3] = as_array(translation_mm, name="translation_mm", shape=(3,))
    return out


def transform_from_rotvec(rotvec_rad: np.ndarray, translation_mm: np.ndarray) -> np.ndarray:
    """Build a rigid 4x4 transform from a rotation vector (rad) and a translation (mm)."""
    rot = Rotation.from_rotvec(as_array(rotvec_rad, name="rotvec_rad", shape=(3,))).as_matrix()
    return make_transform(rot, translation_mm)


def invert_rigid(a_from_b: np.ndarray) -> np.ndarray:
    """Invert a rigid transform exactly (transpose of the rotation), giving ``b_from_a``."""
    m = as_transform(a_from_b, name="a_from_b")
    out = np.eye(4)
    rot_t = m[:3, :3].T
    out[:3, :3] = rot_t
    out[:3, 3] = -rot_t @ m[:3, 3]
    return out


def apply_transform(a_from_b: np.ndarray, points_b: np.ndarray) -> np.ndarray:
    """Map (N, 3) points from frame b to frame a; a single (3,) point gives (1, 3)."""
    m = as_transform(a_from_b, name="a_from_b")
    pts = as_points(points_b, name="points_b")
    return pts @ m[:3, :3].T + m[:3, 3]


def rotation_angle_deg(rotation: np.ndarray) -> float:
    """Angle (deg, 0 to 180) of a rotation: a 3x3 matrix or the rotation part of a 4x4.

    ``atan2(sin, cos)`` with ``sin`` the norm of the skew part (``(R - R^T) / 2`` is
    ``sin(angle)`` times the cross-product matrix of the axis) and ``cos = (trace - 1) / 2``.
    Unlike ``arccos`` of the trace alone it keeps full precision near 0 and 180 deg.
    This is the one formula for the angle of a rotation in the project.

    Examples
    --------
    >>> round(rotation_angle_deg(transform_from_rotvec([0, 0, np.pi / 2], [0, 0, 0])), 9)
    90.0
    >>> rotation_angle_deg(np.diag([1.0, -1.0, -1.0]))
    180.0
    """
    matrix = np.asarray(rotation, dtype=np.float64)
    if matrix.shape == (4, 4):
        rot = as_transform(matrix, name="a_from_b")[:3, :3]
    else:
        rot = as_array(matrix, name="rotation", shape=(3, 3))
    skew = np.array([rot[2, 1] - rot[1, 2], rot[0, 2] - rot[2, 0], rot[1, 0] - rot[0, 1]])
    sin_angle = 0.5 * float(np.linalg.norm(skew))
    cos_angle = 0.5 * (float(np.trace(rot)) - 1.0)
    return float(np.degrees(np.arctan2(sin_angle, cos_angle)))


def angle_between_transforms_deg(a_from_b: np.ndarray, c_from_b: np.ndarray) -> float:
    """Rotation angle (deg) between two rigid poses of the same frame ``b``.

    The angle of ``inverse(a_from_b) @ c_from_b`` (:func:`rotation_angle_deg`); symmetric
    in its arguments.
    """
    a = as_transform(a_from_b, name="a_from_b")
    c = as_transform(c_from_b, name="c_from_b")
    return rotation_angle_deg(a[:3, :3].T @ c[:3, :3])


def angle_between_vectors_deg(u: np.ndarray, v: np.ndarray) -> float:
    """Angle (deg, 0 to 180) between two 3-vectors, e.g. two beam axes.

    ``atan2(|u x v|, u . v)``: accurate near 0 and 180 deg, like :func:`rotation_angle_deg`.
    """
    a = as_array(u, name="u", shape=(3,))
    b = as_array(v, name="v", shape=(3,))
    return float(np.degrees(np.arctan2(np.linalg.norm(np.cross(a, b)), float(a @ b))))


def transform_difference(a_from_b: np.ndarray, a_from_b_true: np.ndarray) -> tuple[float, float]:
    """Translation error (mm) and rotation error (deg) between an estimate and the truth."""
    est = as_transform(a_from_b, name="a_from_b")
    true = as_transform(a_from_b_true, name="a_from_b_true")
    return (float(np.linalg.norm(est[:3, 3] - true[:3, 3])),
            angle_between_transforms_deg(true, est))
