"""A shielding disc placed in the patient, as the electron engine sees it from the beam.

The pencil-beam engine models a disc as a metal slab normal to the beam axis
(:class:`models.dose.electron.ShieldingDisc`: depth of its upstream face below the end face,
lateral centre, thickness along the beam). A :class:`models.patient.edits.DiscPlacement`
is a disc placed anywhere in the patient (``patient_from_disc``: centre, axis). For a given
applicator pose :func:`disc_in_beam` expresses it in the applicator frame:

* the centre's applicator ``(x, y)`` is the lateral centre, its ``z`` less half the
  thickness along the beam is the depth of the upstream face;
* a disc tilted by ``t`` to the beam is traversed by the (parallel) pencils over
  ``thickness / cos t``: that is the slab's thickness along the beam. Its face is taken
  flat at the centre's depth (the engine has no tilted slab), so the tilt is limited to
  :data:`MAX_TILT_DEG`; beyond it the disc is refused rather than modelled wrongly.
"""

from __future__ import annotations

import numpy as np

from models.base.errors import InputError
from models.base.transforms import invert_rigid
from models.base.validation import as_transform
from models.dose.electron import ShieldingDisc
from models.patient.edits import DiscPlacement

#: Largest tilt (deg) between the disc axis and the beam axis the slab model accepts:
#: across an 80 mm disc, 20 deg puts its edges +-15 mm off the flat face's depth.
MAX_TILT_DEG = 20.0


def disc_in_beam(placement: DiscPlacement, patient_from_applicator: np.ndarray, *,
                 max_tilt_deg: float = MAX_TILT_DEG) -> ShieldingDisc:
    """The engine's :class:`ShieldingDisc` for a placed disc and an applicator pose.

    Parameters
    ----------
    placement : DiscPlacement
        The disc in the patient (LPS mm).
    patient_from_applicator : (4, 4) array
        Rigid applicator pose (end-face centre, +z into tissue; LPS mm).
    max_tilt_deg : float
        Refusal limit of the disc's tilt against the beam.

    Raises
    ------
    InputError
        The disc is tilted more than ``max_tilt_deg`` to the beam, or lies upstream of the
        applicator's end face.

    Examples
    --------
    >>> pose = np.eye(4); pose[:3, 3] = (5.0, 0.0, 40.0)      # 40 mm down the beam, 5 mm off
    >>> disc = disc_in_beam(DiscPlacement("lead", 60.0, 4.0, pose), np.eye(4))
    >>> disc.depth_mm, disc.centre_x_mm, disc.thickness_mm
    (38.0, 5.0, 4.0)
    """
    pose = as_transform(patient_from_applicator, name="patient_from_applicator", rigid=True,
                        atol=1e-5)
    applicator_from_disc = invert_rigid(pose) @ placement.patient_from_disc
    centre = applicator_from_disc[:3, 3]
    cos_tilt = abs(float(applicator_from_disc[2, 2]))
    tilt_deg = float(np.degrees(np.arccos(np.clip(cos_tilt, 0.0, 1.0))))
    if tilt_deg > max_tilt_deg:
        raise InputError(f"the {placement.material} disc is tilted {tilt_deg:.0f} deg to the "
                         f"beam; the dose model takes discs within {max_tilt_deg:g} deg of "
                         "normal to the beam: place it flatter or turn the applicator")
    thickness_mm = placement.thickness_mm / cos_tilt
    depth_mm = float(centre[2]) - 0.5 * thickness_mm
    if depth_mm <= 0.0:
        raise InputError(f"the {placement.material} disc lies {-depth_mm:.0f} mm above the "
                         "applicator's end face; a disc goes under the target: check its "
                         "pose")
    return ShieldingDisc(material=placement.material, diameter_mm=placement.diameter_mm,
                         thickness_mm=float(thickness_mm), depth_mm=depth_mm,
                         centre_x_mm=float(centre[0]), centre_y_mm=float(centre[1]))
