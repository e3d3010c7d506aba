"""What the AR view draws by default: the target, the prescription isodose, the planned
ghost, the applicator (and its disc) and only the organs at risk near the beam.

Organs far from the beam (in the phantom: liver, right kidney, spine, pelvis) would cover
the applicator's marker plate and the cavity without telling the surgeon anything about
this placement; each can be switched back on (the window's structure toggles).
"""

from __future__ import annotations

import numpy as np

from guidance.render.scene import Scene
from models.base.validation import as_transform

#: Items always drawn in the AR view (when present).
ALWAYS_SHOWN = ("applicator", "planned_applicator", "isodose", "disc")
#: An organ is "near" when its surface comes within this distance (mm) of the treated
#: cylinder: the applicator's radius around the beam axis, from the end face to the
#: electron practical range (about E/2 cm: 5 mm per MeV).
NEAR_MARGIN_MM = 10.0
RANGE_MM_PER_MEV = 5.0


def distance_to_beam_mm(points_lps: np.ndarray, patient_from_applicator: np.ndarray, *,
                        radius_mm: float, depth_mm: float) -> float:
    """Smallest distance (mm) of ``points_lps`` (N, 3) to the cylinder of ``radius_mm``
    along the applicator's +z from its end face to ``depth_mm``; 0 inside."""
    pose = as_transform(patient_from_applicator, name="patient_from_applicator", rigid=True)
    d = np.asarray(points_lps, dtype=np.float64) - pose[:3, 3]
    if not len(d):
        return float("inf")
    axis = pose[:3, 2]
    t = d @ axis
    perp = np.linalg.norm(d - t[:, None] * axis[None, :], axis=1)
    radial = np.maximum(perp - radius_mm, 0.0)
    axial = np.maximum(np.maximum(-t, t - depth_mm), 0.0)
    return float(np.hypot(radial, axial).min())


def default_ar_items(scene: Scene, patient_from_applicator: np.ndarray, *, target: str,
                     applicator_diameter_mm: float, energy_mev: float,
                     margin_mm: float = NEAR_MARGIN_MM) -> set[str]:
    """Names of the scene items the AR view shows by default (see the module docstring):
    the target, :data:`ALWAYS_SHOWN`, and the organs within ``margin_mm`` of the beam at
    the planned pose ``patient_from_applicator``."""
    shown = {name for name in (target, *ALWAYS_SHOWN) if name in scene.items}
    for name, item in scene.items.items():
        if name in shown or item.patient_from_item is not None:
            continue
        gap = distance_to_beam_mm(np.asarray(item.mesh.points), patient_from_applicator,
                                  radius_mm=applicator_diameter_mm / 2.0,
                                  depth_mm=RANGE_MM_PER_MEV * energy_mev)
        if gap <= margin_mm:
            shown.add(name)
    return shown
