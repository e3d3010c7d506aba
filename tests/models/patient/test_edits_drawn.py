"""A free-hand region drawn on a slice and extruded through a thickness: its voxels, its
checks and its round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest
from matplotlib.path import Path as MplPath

from models.base.errors import InputError
from models.patient.edits import (
    FILL_HU,
    REGION_NAME,
    EditList,
    Resection,
    ResectionRegion,
    points_in_polygon,
)
from models.patient.volume import Volume


def _grid() -> Volume:
    return Volume.from_grid(np.zeros((11, 30, 30), np.float32), spacing_mm=(1.0, 1.0, 1.0))


def _voxel_points(ct: Volume) -> np.ndarray:
    k, j, i = np.indices(ct.shape)
    return ct.voxel_to_patient(np.column_stack([i.ravel(), j.ravel(), k.ravel()]))


def test_a_square_drawn_on_an_axial_slice_fills_the_voxel_count_it_encloses() -> None:
    ct = _grid()
    # corners half-way between voxel centres: centres 3..12 inside in i and j (10 x 10)
    corners_ijk = np.array([[2.5, 2.5, 5.0], [12.5, 2.5, 5.0], [12.5, 12.5, 5.0],
                            [2.5, 12.5, 5.0]])
    region = ResectionRegion.drawn(ct.voxel_to_patient(corners_ijk),
                                   ct.patient_from_voxel[:3, 2], 4.5)
    mask = region.mask_on(ct)
    assert int(mask.sum()) == 10 * 10 * 5           # slices 3..7: |dz| <= 2.25 mm
    assert mask[5, 3:13, 3:13].all() and not mask[5, 2, 5] and not mask[8].any()


def test_a_drawn_circle_on_an_oblique_slice_matches_matplotlib() -> None:
    ct = _grid()
    rng = np.random.default_rng(3)
    normal = rng.normal(size=3)
    normal /= np.linalg.norm(normal)
    u = np.cross(normal, [1.0, 0.0, 0.0])
    u /= np.linalg.norm(u)
    v = np.cross(normal, u)
    centre = ct.voxel_to_patient(np.array([[14.2, 15.1, 5.3]]))[0]
    t = np.linspace(0.0, 2.0 * np.pi, 48, endpoint=False)
    wobble = 8.0 + 1.5 * np.sin(3 * t)                 # not convex everywhere
    outline = centre + (wobble * np.cos(t))[:, None] * u + (wobble * np.sin(t))[:, None] * v
    region = ResectionRegion.drawn(outline, normal * 3.0, 3.0)
    mask = region.mask_on(ct)
    # independent truth: matplotlib's point-in-polygon in the slice plane, |distance| <= 1.5
    pts = _voxel_points(ct) - centre
    in_plane = MplPath(np.column_stack([(outline - centre) @ u, (outline - centre) @ v]))
    expected = in_plane.contains_points(np.column_stack([pts @ u, pts @ v])) \
        & (np.abs(pts @ normal) <= 1.5)
    assert expected.sum() > 300
    assert np.array_equal(mask.ravel(), expected)


def test_points_in_polygon_agrees_with_matplotlib_on_random_outlines() -> None:
    rng = np.random.default_rng(11)
    for _ in range(20):
        polygon = rng.uniform(-10, 10, size=(rng.integers(3, 12), 2))
        points = rng.uniform(-12, 12, size=(500, 2))
        ours = points_in_polygon(points, polygon)
        theirs = MplPath(polygon).contains_points(points)
        assert np.mean(ours == theirs) == 1.0


def test_a_drawn_region_saves_seals_and_resects_like_the_other_shapes(coarse_phantom) -> None:
    from models.patient.phantom import planned_patient_from_applicator

    case = coarse_phantom
    tip = planned_patient_from_applicator(case)
    centre = tip[:3, 3] + 12.0 * tip[:3, 2]
    t = np.linspace(0.0, 2.0 * np.pi, 30, endpoint=False)
    outline = centre + np.column_stack([10.0 * np.cos(t), 14.0 * np.sin(t), np.zeros_like(t)])
    region = ResectionRegion.drawn(outline, np.array([0.0, 0.0, 1.0]), 6.0)
    edits = EditList([Resection(REGION_NAME, fill="air", region=region)])
    edited = edits.apply(case)
    inside = region.mask_on(case.ct)
    body = np.logical_or.reduce([s.mask for s in case.structures.values()
                                 if s.roi_type in ("EXTERNAL", "CAVITY")])
    assert (inside & body).sum() > 20
    assert np.all(edited.ct.array[inside & body] == FILL_HU["air"])
    np.testing.assert_array_equal(edited.ct.array[~inside], case.ct.array[~inside])
    assert edits.descriptions(case)[0].startswith("drawn region ")
    text = json.dumps(edits.to_json())                  # as saved in the case folder
    again = EditList.from_json(json.loads(text))
    assert again.to_json() == edits.to_json()           # bit for bit (floats round-trip)
    assert next(iter(again)).region.outline_mm == region.outline_mm
    np.testing.assert_array_equal(again.apply(case).ct.array, edited.ct.array)


@pytest.mark.parametrize(("points", "says"), [
    ([[0, 0, 0], [5, 0, 0]], "at least 3 points"),
    ([[0, 0, 0], [5, 0, 0], [10, 0, 0]], "encloses"),                  # a line
    ([[0, 0, 0], [5, 0, 0], [np.nan, 5, 0]], "NaN or infinite"),
])
def test_a_bad_drawing_is_refused_in_one_line(points, says) -> None:
    with pytest.raises(InputError, match=says):
        ResectionRegion.drawn(np.array(points, float), np.array([0.0, 0.0, 1.0]), 4.0)


def test_a_drawn_region_needs_a_thickness_and_a_normal() -> None:
    square = np.array([[0, 0, 0], [10, 0, 0], [10, 10, 0], [0, 10, 0]], float)
    with pytest.raises(InputError, match="contour length_mm"):
        ResectionRegion.drawn(square, np.array([0.0, 0.0, 1.0]), 0.0)
    with pytest.raises(InputError, match="normal"):
        ResectionRegion.drawn(square, np.zeros(3), 4.0)
    with pytest.raises(InputError, match="no outline_mm"):
        ResectionRegion("sphere", np.eye(4), 5.0, outline_mm=((0, 0), (1, 0), (0, 1)))
