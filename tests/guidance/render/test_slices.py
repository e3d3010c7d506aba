"""Slice views: geometry of the resampled plane, outlines, isodose lines, DVH plot."""

from __future__ import annotations

import numpy as np
import pytest

from guidance.render.slices import (
    IsodoseLevel,
    Outline,
    plane_frame,
    render_slice,
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
