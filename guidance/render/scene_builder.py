"""The one scene builder: a case's target, organs and applicator as view items.

The AR overlay, the 3D view and the demo all draw the same :class:`~guidance.render.scene.Scene`
built here, so a structure has the same look everywhere: the target in
:data:`~guidance.render.scene.STYLE_TARGET`, organs in their RTSTRUCT colour, the tracked
applicator (hidden until it is tracked) and, when a plan is given, its planned pose as a
translucent green ghost.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from guidance.render.scene import (
    STYLE_APPLICATOR,
    STYLE_ORGAN,
    STYLE_TARGET,
    Scene,
    SceneItem,
    applicator_mesh,
    rgb_unit,
)
from guidance.treatment.dose_service import HIDDEN_ROI_TYPES
from models.base.validation import as_transform
from models.patient.case import Case

#: Look of the planned applicator pose (a translucent ghost).
STYLE_PLANNED_APPLICATOR = {"color": (0.3, 0.9, 0.4), "opacity": 0.25}


def applicator_view_mesh(diameter_mm: float, bevel_deg: float = 0.0):
    """The applicator tube as the views draw it (tracked and planned alike)."""
    return applicator_mesh(diameter_mm, bevel_deg=bevel_deg, resolution=32)


#: The shielding disc in the views: metal grey, nearly opaque.
STYLE_DISC = {"color": (0.62, 0.66, 0.74), "opacity": 0.85}


def disc_view_mesh(diameter_mm: float, thickness_mm: float, depth_mm: float):
    """The shielding disc in the applicator frame: a slab normal to the beam axis whose
    upstream face is ``depth_mm`` below the end face (mm)."""
    import pyvista as pv

    return pv.Cylinder(center=(0.0, 0.0, depth_mm + thickness_mm / 2.0),
                       direction=(0.0, 0.0, 1.0), radius=diameter_mm / 2.0,
                       height=thickness_mm, resolution=48).triangulate()


def kv_view_mesh(diameter_mm: float):
    """A kV spherical applicator in its frame (origin = the sphere's centre, mm)."""
    import pyvista as pv

    return pv.Sphere(radius=diameter_mm / 2.0, theta_resolution=32, phi_resolution=24)


def build_scene(case: Case, *, applicator_diameter_mm: float, bevel_deg: float = 0.0,
                target: str = "CTV", organs: Iterable[str] | None = None,
                planned_patient_from_applicator: np.ndarray | None = None,
                max_triangles: int = 4000) -> Scene:
    """Scene of ``case`` in patient LPS (mm).

    Parameters
    ----------
    case : Case
        Structures are meshed from their masks (decimated to ``max_triangles`` each).
    applicator_diameter_mm, bevel_deg : float
        The applicator drawn as ``"applicator"`` (invisible until a pose is set).
    target : str
        Structure drawn in the target style.
    organs : iterable of str, optional
        Organs to draw, in this order (missing or empty ones are left out); default: every
        structure that is not of a :data:`HIDDEN_ROI_TYPES` type.
    planned_patient_from_applicator : (4, 4) array, optional
        Adds ``"planned_applicator"`` at the planned pose; the tracked applicator starts there.
    max_triangles : int
        Triangle budget per structure mesh (the live views want a few thousand).

    Returns
    -------
    Scene
        Items: the target, the organs, ``"planned_applicator"`` (with a plan) and
        ``"applicator"``.
    """
    scene = Scene()
    if organs is None:
        names = [n for n, s in case.structures.items() if s.roi_type not in HIDDEN_ROI_TYPES]
    else:
        names = [target, *(n for n in organs if n != target)]
    for name in names:
        structure = case.structures.get(name)
        if structure is None or not structure.mask.any():
            continue
        mesh = case.mesh(name, max_triangles=max_triangles)
        style = STYLE_TARGET if name == target else {
            "color": rgb_unit(structure.color_rgb), **STYLE_ORGAN}
        scene.add(SceneItem(name, mesh, **style))
    start = np.eye(4)
    if planned_patient_from_applicator is not None:
        plan = as_transform(planned_patient_from_applicator,
                            name="planned_patient_from_applicator", rigid=True)
        scene.add(SceneItem("planned_applicator",
                            applicator_view_mesh(applicator_diameter_mm, bevel_deg),
                            patient_from_item=plan, **STYLE_PLANNED_APPLICATOR))
        start = plan.copy()
    scene.add(SceneItem("applicator",
                        applicator_view_mesh(applicator_diameter_mm, bevel_deg),
                        **STYLE_APPLICATOR, patient_from_item=start, visible=False))
    return scene
