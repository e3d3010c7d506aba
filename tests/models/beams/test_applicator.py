"""Applicator geometry: bevelled face, normal, aperture weights."""

from __future__ import annotations

import numpy as np
import pytest

from models.beams.applicator import Applicator


@pytest.mark.parametrize("bevel", [0.0, 15.0, 30.0, 45.0])
def test_rim_lies_in_the_face_plane_normal_to_face_normal(bevel):
    app = Applicator(60.0, bevel)
    rim = app.rim_points(32)
    normal = app.face_normal()
    assert np.linalg.norm(normal) == pytest.approx(1.0, abs=1e-12)
    assert np.abs(rim @ normal).max() == pytest.approx(0.0, abs=1e-9)
    # the normal is tilted from the beam axis by the bevel angle
    assert np.degrees(np.arccos(normal @ [0.0, 0.0, 1.0])) == pytest.approx(bevel, abs=1e-9)
    # the toe (long side) is at +y: its face lies deeper along the beam
    assert app.face_z_mm(0.0, 30.0) == pytest.approx(30.0 * np.tan(np.radians(bevel)))


def test_aperture_weights_integrate_to_the_disc_area():
    app = Applicator(50.0)
    h = 2.0
    coords = np.arange(-30.0, 30.0 + h / 2, h)
    xx, yy = np.meshgrid(coords, coords)
    weights = app.aperture_weights(h, xx, yy, supersample=16)
    assert weights.sum() * h * h == pytest.approx(np.pi * 25.0 ** 2, rel=2e-3)
    assert weights.max() == 1.0 and weights.min() == 0.0


@pytest.mark.parametrize(("diameter", "bevel"), [(0.0, 0.0), (-5.0, 0.0), (50.0, 70.0),
                                                 (50.0, float("nan"))])
def test_bad_geometry_is_refused(diameter, bevel):
    with pytest.raises(ValueError):
        Applicator(diameter, bevel)
