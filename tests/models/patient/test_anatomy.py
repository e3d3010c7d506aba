"""Labelmap -> mesh and contours against analytic shapes (sphere, ring) on tilted grids."""

from __future__ import annotations

import numpy as np
import pytest

from models.base.transforms import transform_from_rotvec
from models.patient.anatomy import decimate_mesh, mask_to_contours, mask_to_mesh
from models.patient.volume import Volume


def _sphere_volume(radius_mm: float, spacing: tuple[float, float, float],
                   patient_from_volume: np.ndarray) -> tuple[Volume, np.ndarray]:
    n = [int(2.6 * radius_mm / s) for s in spacing]
    affine = np.eye(4)
    affine[:3, :3] = np.diag(spacing)
    affine[:3, 3] = -0.5 * (np.array(n) - 1) * np.array(spacing)
    vol = Volume(np.zeros(n[::-1], dtype=np.float32), patient_from_volume @ affine)
    centre = patient_from_volume[:3, 3]
    dist = np.linalg.norm(vol.voxel_centres() - centre, axis=-1)
    return vol, dist <= radius_mm


@pytest.mark.parametrize("tilt", [False, True])
def test_sphere_mesh_matches_analytic_sphere(tilt: bool, rng: np.random.Generator) -> None:
    radius = 20.0
    pose = transform_from_rotvec(rng.normal(size=3) * 0.5, [30.0, -40.0, 10.0]) if tilt \
        else np.eye(4)
    if tilt:  # a reflected grid (det < 0) must still give outward normals
        pose[:3, 0] *= -1.0
    vol, mask = _sphere_volume(radius, (1.0, 1.2, 1.6), pose)
    mesh = mask_to_mesh(mask, vol.patient_from_voxel)
    centre = pose[:3, 3]
    r = np.linalg.norm(mesh.points - centre, axis=1)
    assert abs(r.mean() - radius) < 0.5
    assert r.std() < 0.5
    assert mesh.volume == pytest.approx(4.0 / 3.0 * np.pi * radius ** 3, rel=0.04)
    outward = np.einsum("ij,ij->i", mesh.point_data["Normals"], mesh.points - centre)
    assert np.mean(outward > 0) > 0.99
    assert mesh.n_open_edges == 0


def test_decimate_respects_budget() -> None:
    vol, mask = _sphere_volume(15.0, (1.0, 1.0, 1.0), np.eye(4))
    mesh = mask_to_mesh(mask, vol.patient_from_voxel)
    small = decimate_mesh(mesh, 500)
    assert 400 <= small.n_cells <= 500
    r = np.linalg.norm(small.points, axis=1)
    assert abs(r.mean() - 15.0) < 0.6
    assert decimate_mesh(small, 10_000).n_cells == small.n_cells
    with pytest.raises(ValueError, match="max_triangles"):
        decimate_mesh(mesh, 2)


def test_empty_mask_gives_empty_mesh() -> None:
    assert mask_to_mesh(np.zeros((3, 3, 3), bool), np.eye(4)).n_points == 0
    assert mask_to_contours(np.zeros((3, 3, 3), bool)) == {}


def test_ring_contours_have_outer_and_hole_at_right_radii() -> None:
    n = 41
    jj, ii = np.mgrid[0:n, 0:n]
    rr = np.hypot(ii - 20.0, jj - 20.0)
    ring = (rr <= 15.0) & (rr >= 7.0)
    mask = np.zeros((3, n, n), dtype=bool)
    mask[1] = ring
    mask[2, 0:5, 0:5] = True  # touches the grid border: still closed
    contours = mask_to_contours(mask)
    assert sorted(contours) == [1, 2]
    loops = contours[1]
    assert len(loops) == 2
    radii = sorted(np.hypot(loop[:, 0] - 20.0, loop[:, 1] - 20.0).mean() for loop in loops)
    assert radii[0] == pytest.approx(6.5, abs=0.5)
    assert radii[1] == pytest.approx(15.5, abs=0.5)
    corner = contours[2][0]
    np.testing.assert_allclose(corner.min(axis=0), [-0.5, -0.5], atol=1e-9)
    np.testing.assert_allclose(corner.max(axis=0), [4.5, 4.5], atol=1e-9)
