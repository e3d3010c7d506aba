"""Case and Structure: validation, centroids, volumes, meshes (cached, LPS mm)."""

from __future__ import annotations

import numpy as np
import pytest

from models.base.errors import InputError
from models.patient.case import Case, Structure
from models.patient.volume import Volume


def _box_case() -> Case:
    ct = Volume.from_grid(np.zeros((10, 12, 14), dtype=np.float32), spacing_mm=(1.0, 2.0, 3.0),
                          origin_mm=(-5.0, 10.0, 100.0))
    mask = np.zeros(ct.shape, dtype=bool)
    mask[2:6, 3:7, 4:10] = True  # k 2..5, j 3..6, i 4..9
    return Case(ct=ct, structures={"BOX": Structure("BOX", mask, (1, 2, 3), "ORGAN")},
                fiducials_lps={"F": [1.0, 2.0, 3.0]})


def test_centroid_and_volume_from_known_box() -> None:
    case = _box_case()
    # centre index i 6.5, j 4.5, k 3.5 -> LPS
    np.testing.assert_allclose(case.centroid_lps("BOX"),
                               [-5.0 + 6.5, 10.0 + 2.0 * 4.5, 100.0 + 3.0 * 3.5], atol=1e-12)
    assert case.volume_cc("BOX") == pytest.approx(4 * 4 * 6 * 6.0 / 1000.0)
    np.testing.assert_allclose(case.centroid_lps("F"), [1.0, 2.0, 3.0])


def test_missing_structure_names_choices() -> None:
    with pytest.raises(InputError, match="available: BOX"):
        _box_case().structure("LIVER")


def test_shape_mismatch_rejected() -> None:
    case = _box_case()
    with pytest.raises(ValueError, match="differs from CT grid"):
        Case(ct=case.ct, structures={"X": Structure("X", np.zeros((2, 2, 2), bool))})
    with pytest.raises(ValueError, match="differs from CT grid"):
        case.add_structure(Structure("X", np.zeros((2, 2, 2), bool)))


@pytest.mark.parametrize("color", [(0, 0, 256), (1, 2)])
def test_bad_color_rejected(color) -> None:
    with pytest.raises(ValueError, match="color_rgb"):
        Structure("X", np.zeros((2, 2, 2), bool), color)


def test_mesh_is_cached_in_lps_and_replaced_on_edit() -> None:
    case = _box_case()
    mesh = case.mesh("BOX")
    assert case.mesh("BOX") is mesh
    lo, hi = np.array(mesh.bounds).reshape(3, 2).T
    # the box surface lies between voxel centres of inside/outside voxels
    np.testing.assert_allclose(lo, [-5.0 + 3.5, 10.0 + 2.0 * 2.5, 100.0 + 3.0 * 1.5], atol=0.6)
    np.testing.assert_allclose(hi, [-5.0 + 9.5, 10.0 + 2.0 * 6.5, 100.0 + 3.0 * 5.5], atol=0.6)
    smaller = case.mesh("BOX", max_triangles=40)
    assert 4 <= smaller.n_cells <= 40
    mask = np.zeros(case.ct.shape, dtype=bool)
    mask[0:2, 0:2, 0:2] = True
    case.add_structure(Structure("BOX", mask))
    assert case.mesh("BOX") is not mesh
