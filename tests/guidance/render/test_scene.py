"""Isodose surfaces and applicator meshes against analytic geometry."""

from __future__ import annotations

import numpy as np
import pytest

from guidance.render.scene import applicator_mesh, isodose_surface
from models.base.transforms import transform_from_rotvec
from models.patient.volume import Volume


def test_isodose_of_gaussian_is_sphere_of_known_radius() -> None:
    axis = np.linspace(-20.0, 20.0, 41)
    z, y, x = np.meshgrid(axis, axis, axis, indexing="ij")
    r2 = x**2 + y**2 + z**2
    # oblique grid: the surface must come out in patient space through the affine
    patient_from_voxel = transform_from_rotvec([0.2, -0.1, 0.3], [0.0, 0.0, 0.0])
    patient_from_voxel[:3, 3] = patient_from_voxel[:3, :3] @ [-20.0, -20.0, -20.0] + [5, 6, 7]
    dose = Volume(10.0 * np.exp(-r2 / 200.0), patient_from_voxel)
    surface = isodose_surface(dose, 5.0)
    radius = np.linalg.norm(surface.points - np.array([5.0, 6.0, 7.0]), axis=1)
    expected = np.sqrt(200.0 * np.log(2.0))
    np.testing.assert_allclose(radius, expected, atol=0.15)


def test_isodose_never_reached_is_empty() -> None:
    dose = Volume.from_grid(np.ones((4, 4, 4)), spacing_mm=(1, 1, 1))
    assert isodose_surface(dose, 2.0).n_points == 0


@pytest.mark.parametrize("bevel_deg", [0.0, 15.0, 30.0, 45.0])
def test_applicator_end_face_and_long_side(bevel_deg: float) -> None:
    tube = applicator_mesh(60.0, bevel_deg=bevel_deg)
    radial = np.linalg.norm(tube.points[:, :2], axis=1)
    # points cut on the tube's facets lie on chords: between R cos(pi/48) and R
    assert radial.max() == pytest.approx(30.0, abs=1e-2)
    assert radial.min() >= 30.0 * np.cos(np.pi / 48) - 1e-2
    normal = np.array([0.0, -np.sin(np.radians(bevel_deg)), np.cos(np.radians(bevel_deg))])
    assert (tube.points @ normal).max() == pytest.approx(0.0, abs=1e-2)
    assert tube.points[:, 2].max() == pytest.approx(30.0 * np.tan(np.radians(bevel_deg)),
                                                    abs=1e-2)
