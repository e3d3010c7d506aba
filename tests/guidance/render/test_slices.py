"""Slice views: geometry of the resampled plane, outlines, isodose lines, DVH plot."""

from __future__ import annotations

import numpy as np
import pytest

from guidance.render.slices import (
    IsodoseLevel,
    Outline,
    plane_frame,
    render_slice,
    sample_masks,
    sample_plane,
)
from models.patient.volume import Volume

RED, YELLOW = (255, 0, 0), (255, 255, 0)


@pytest.fixture
def ct() -> Volume:
    """CT with a marker voxel-line pattern: HU = 10 * x_mm (so resampling is checkable)."""
    shape = (40, 60, 80)  # k, j, i
    vol = Volume.from_grid(np.zeros(shape, np.float32), spacing_mm=(1.0, 1.5, 2.0),
                           origin_mm=(-40.0, -45.0, -40.0))
    centres = vol.voxel_centres()
    return vol.with_array((10.0 * centres[..., 0]).astype(np.float32))


def test_plane_frame_centres_and_orients(ct: Volume) -> None:
    centre = np.array([1.0, 2.0, 3.0])
    for orientation, col, row in [("axial", [1, 0, 0], [0, 1, 0]),
                                  ("sagittal", [0, 1, 0], [0, 0, -1]),
                                  ("coronal", [1, 0, 0], [0, 0, -1])]:
        frame = plane_frame(orientation, centre, size_px=101, pixel_mm=0.5)
        np.testing.assert_allclose(frame @ [50, 50, 0, 1], [*centre, 1], atol=1e-12)
        np.testing.assert_allclose(frame[:3, 0], np.array(col) * 0.5, atol=0)
        np.testing.assert_allclose(frame[:3, 1], np.array(row) * 0.5, atol=0)
    with pytest.raises(ValueError, match="oblique"):
        plane_frame("oblique", centre, size_px=10, pixel_mm=1.0)


def test_sample_plane_matches_analytic_ct(ct: Volume) -> None:
    frame = plane_frame("axial", np.array([0.3, 0.0, 0.0]), size_px=41, pixel_mm=1.0)
    values = sample_plane(ct, frame, 41, order=1)
    x_mm = 0.3 + np.arange(41) - 20.0
    np.testing.assert_allclose(values[20], 10.0 * x_mm, atol=1e-3)


def test_sample_masks_is_scipy_nearest_neighbour_on_an_oblique_plane(ct: Volume) -> None:
    """One voxel lookup for all masks gives scipy's order-0 values (away from the grid's
    outer half voxel, where scipy's constant mode decides by its own rule)."""
    from scipy import ndimage
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(5)
    masks = [rng.random(ct.array.shape) > 0.5 for _ in range(3)]
    frame = plane_frame("axial", np.array([-36.3, -1.1, -20.7]), size_px=64, pixel_mm=0.9)
    tilt = np.eye(4)
    tilt[:3, :3] = Rotation.from_rotvec([0.3, -0.4, 0.2]).as_matrix()
    frame = tilt @ frame
    got = sample_masks(ct, masks, frame, 64)
    rows, cols = np.mgrid[0:64, 0:64]
    pixel = np.stack([cols.ravel(), rows.ravel(), np.zeros(cols.size), np.ones(cols.size)])
    ijk = (ct.voxel_from_patient @ frame @ pixel)[:3]
    inner = np.all((ijk > 0.5) & (ijk < np.array(ct.array.shape[::-1])[:, None] - 1.5),
                   axis=0).reshape(64, 64)
    outside = np.any((ijk < -0.5) | (ijk > np.array(ct.array.shape[::-1])[:, None] - 0.5),
                     axis=0).reshape(64, 64)
    assert inner.sum() > 1000 and outside.sum() > 100
    for mask, values in zip(masks, got, strict=True):
        want = ndimage.map_coordinates(mask.view(np.uint8), ijk[::-1], order=0,
                                       mode="constant", cval=0).reshape(64, 64) > 0
        assert values.dtype == bool and values.shape == (64, 64)
        np.testing.assert_array_equal(values[inner], want[inner])
        assert not values[outside].any()


def test_outline_and_isodose_drawn_where_they_are(ct: Volume) -> None:
    centres = ct.voxel_centres()
    r = np.linalg.norm(centres, axis=-1)
    box = (np.abs(centres[..., 0]) <= 10.0) & (np.abs(centres[..., 1]) <= 10.0) & \
        (np.abs(centres[..., 2]) <= 10.0)
    dose = Volume.from_grid(np.zeros((41, 41, 41)), spacing_mm=(2.0, 2.0, 2.0),
                            origin_mm=(-40.0, -40.0, -40.0))
    dose_r = np.linalg.norm(dose.voxel_centres(), axis=-1)
    dose = dose.with_array(np.clip(30.0 - dose_r, 0, None))  # 10 Gy at r = 20 mm
    pose = np.eye(4)
    image = render_slice(ct.with_array(np.zeros_like(r, dtype=np.float32)), "axial",
                         np.zeros(3), outlines={"BOX": Outline(box, RED)}, dose=dose,
                         isodoses=[IsodoseLevel(10.0, YELLOW)], patient_from_applicator=pose,
                         size_px=81, pixel_mm=1.0)
    rgb = image.rgb
    assert rgb.shape == (81, 81, 3)
    is_red = np.all(rgb == RED, axis=2)
    is_yellow = np.all(rgb == YELLOW, axis=2)
    # box edge at x = +-10 mm -> columns 30 and 50 (outline on the inside boundary)
    red_cols = np.unique(np.nonzero(is_red[40])[0])
    assert set(red_cols) == {30, 50}
    # isodose 10 Gy circle of radius 20 mm about the centre pixel (40, 40)
    rows, cols = np.nonzero(is_yellow)
    radius = np.hypot(rows - 40, cols - 40)
    assert len(radius) > 100
    assert np.abs(radius - 20.0).max() <= 2.5
    # applicator axis drawn from the centre point (cyan dot at the end face)
    col, row = image.pixel_of(np.zeros(3))
    assert (col, row) == pytest.approx((40.0, 40.0), abs=1e-9)
    assert tuple(rgb[40, 40]) == (0, 230, 255)
