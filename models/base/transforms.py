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


def rotation_angle_deg(a_from_b: np.ndarray) -> float:
    """Rotation angle (degrees) of the rotation part of a transform; 0 for identity."""
    rot = as_transform(a_from_b, name="a_from_b")[:3, :3]
    cos_angle = np.clip((np.trace(rot) - 1.0) / 2.0, -1.0, 1.0)
    return float(np.degrees(np.arccos(cos_angle)))


def transform_difference(a_from_b: np.ndarray, a_from_b_true: np.ndarray) -> tuple[float, float]:
    """Translation error (mm) and rotation error (deg) between an estimate and the truth."""
    est = as_transform(a_from_b, name="a_from_b")
    true = as_transform(a_from_b_true, name="a_from_b_true")
    delta = invert_rigid(true) @ est
    return float(np.linalg.norm(est[:3, 3] - true[:3, 3])), rotation_angle_deg(delta)
