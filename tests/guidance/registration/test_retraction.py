"""A pointer sweep over a retracted organ gives back the known move, or is refused."""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from guidance.registration.retraction import fit_retraction
from guidance.registration.surface import surface_points
from models.base.transforms import angle_between_transforms_deg


def _truth(case) -> np.ndarray:
    c = case.centroid_lps("STOMACH")
    move = np.eye(4)
    move[:3, :3] = Rotation.from_euler("z", 10.0, degrees=True).as_matrix()
    move[:3, 3] = c - move[:3, :3] @ c + np.array([18.0, -12.0, 6.0])
    return move


def _sweep(case, move, rng, n=400, noise_mm=0.4) -> np.ndarray:
    """Points on the exposed (anterior, -y) side of the moved stomach, with pointer noise."""
    points, normals = surface_points(case.mesh("STOMACH"))
    exposed = normals @ np.array([0.0, -1.0, 0.0]) > 0.2
    pick = rng.choice(np.flatnonzero(exposed), size=n, replace=False)
    moved = points[pick] @ move[:3, :3].T + move[:3, 3]
    return moved + rng.normal(0.0, noise_mm, moved.shape)


def test_sweep_of_the_exposed_side_recovers_the_move(coarse_phantom, rng) -> None:
    case = coarse_phantom
    move = _truth(case)
    fit = fit_retraction(case, "STOMACH", _sweep(case, move, rng))
    assert fit.accepted, fit.reason
    c = case.centroid_lps("STOMACH")
    got = fit.patient_from_retracted[:3, :3] @ c + fit.patient_from_retracted[:3, 3]
    want = move[:3, :3] @ c + move[:3, 3]
    assert np.linalg.norm(got - want) < 1.5
    assert angle_between_transforms_deg(fit.patient_from_retracted, move) < 2.0
    assert fit.rms_mm < 1.0


def test_points_that_are_not_the_organ_are_refused(coarse_phantom, rng) -> None:
    case = coarse_phantom
    c = case.centroid_lps("STOMACH")
    cloud = c + rng.uniform(-40.0, 40.0, size=(300, 3))     # a sweep of something else
    fit = fit_retraction(case, "STOMACH", cloud)
    assert not fit.accepted and "does not match the STOMACH" in fit.reason
    few = fit_retraction(case, "STOMACH", _sweep(case, _truth(case), rng, n=49))
    assert not few.accepted and "49 sweep points, need 50" in few.reason


def test_the_organ_follows_the_retractor_only_while_grabbed(rng) -> None:
    from guidance.registration.retraction import RetractorCoupling
    from tests.conftest import random_rigid

    start = random_rigid(rng, 20.0)
    coupling = RetractorCoupling("BOWEL", start)
    blade0 = random_rigid(rng, 100.0)
    coupling.follow(random_rigid(rng, 100.0))          # not grabbed: nothing moves
    np.testing.assert_allclose(coupling.patient_from_retracted, start)
    coupling.grab(blade0)
    motion = random_rigid(rng, 30.0)                   # the blade moves by `motion`
    now = coupling.follow(motion @ blade0)
    np.testing.assert_allclose(now, motion @ start, atol=1e-9)
    np.testing.assert_allclose(coupling.follow(None), now)   # blade hidden: organ stays
    edit = coupling.release(who="surgeon")
    assert not coupling.coupled and edit.provenance.how == "tracked retractor"
    coupling.follow(random_rigid(rng, 100.0))          # released: frozen
    np.testing.assert_allclose(coupling.patient_from_retracted, now)
    np.testing.assert_allclose(edit.patient_from_retracted, now)


def _bowel_move(case) -> np.ndarray:
    """The small bowel pulled 35 mm anterior and superior, turned 4 deg about its centre."""
    c = case.centroid_lps("BOWEL")
    move = np.eye(4)
    move[:3, :3] = Rotation.from_euler("y", 4.0, degrees=True).as_matrix()
    move[:3, 3] = c - move[:3, :3] @ c + np.array([0.0, -21.0, 28.0])   # |t| = 35 mm
    return move


def _exposed_sweep(case, name, move, rng, n=300, noise_mm=0.5) -> np.ndarray:
    points, normals = surface_points(case.mesh(name))
    exposed = normals @ np.array([0.0, -1.0, 0.0]) > 0.2
    pick = rng.choice(np.flatnonzero(exposed), size=n, replace=False)
    moved = points[pick] @ move[:3, :3].T + move[:3, 3]
    return moved + rng.normal(0.0, noise_mm, moved.shape)


def test_sweep_with_half_mm_noise_over_the_moved_bowel_recovers_2_mm_2_deg(
        coarse_phantom, rng) -> None:
    case = coarse_phantom
    move = _bowel_move(case)
    fit = fit_retraction(case, "BOWEL", _exposed_sweep(case, "BOWEL", move, rng))
    assert fit.accepted, fit.reason
    # error of the whole organ: the worst of its mask voxels, not just the centroid
    kji = np.argwhere(case.structures["BOWEL"].mask)
    pts = case.ct.voxel_to_patient(kji[:, ::-1].astype(float))
    got = pts @ fit.patient_from_retracted[:3, :3].T + fit.patient_from_retracted[:3, 3]
    want = pts @ move[:3, :3].T + move[:3, 3]
    error_mm = np.linalg.norm(got - want, axis=1)
    assert float(np.linalg.norm(got.mean(0) - want.mean(0))) < 2.0
    assert float(np.percentile(error_mm, 95)) < 2.0
    assert angle_between_transforms_deg(fit.patient_from_retracted, move) < 2.0


def test_a_sweep_over_the_wrong_organ_is_refused(coarse_phantom, rng) -> None:
    """The surgeon names BOWEL but sweeps the (moved) stomach: refused, not fitted."""
    case = coarse_phantom
    sweep = _exposed_sweep(case, "STOMACH", _bowel_move(case), rng)
    fit = fit_retraction(case, "BOWEL", sweep)
    assert not fit.accepted and "does not match the BOWEL" in fit.reason
