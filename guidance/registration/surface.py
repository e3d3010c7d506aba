"""Surface registration: swept points onto the CT surface by point-to-plane ICP (open3d).

Points swept over the skin (or an organ) with the pointer, or reconstructed by the camera,
are in the reference frame; the CT surface mesh is in patient LPS. After a coarse alignment
(the paired-point registration when there is one, else the centroids), open3d's legacy
point-to-plane ICP (Chen & Medioni 1992, doi:10.1016/0262-8856(92)90066-C) refines the fit
in a coarse-to-fine schedule of correspondence distances. The legacy API is used on
purpose: the tensor API was ~20x slower on this CPU.

The result reports the inlier RMS and fitness (fraction of points with a surface point
within the final distance), and :func:`registration_disagreement_mm` checks it against
the paired-point result at points that matter (the target).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from models.base.errors import InputError
from models.base.validation import as_points, as_transform

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SurfaceRegistrationResult:
    """Result of :func:`register_surface`.

    Attributes
    ----------
    target_from_source : (4, 4) array
        E.g. ``patient_from_reference``.
    inlier_rms_mm : float
        RMS point-to-surface distance of the inliers (mm).
    fitness : float
        Fraction of source points with a correspondence within the last distance.
    n_points : int
        Source points used.
    time_s : float
        Wall time of the ICP stages.
    """

    target_from_source: np.ndarray
    inlier_rms_mm: float
    fitness: float
    n_points: int
    time_s: float


def _point_cloud(points: np.ndarray, normals: np.ndarray | None = None):  # -> o3d PointCloud
    import open3d as o3d

    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points))
    if normals is not None:
        cloud.normals = o3d.utility.Vector3dVector(normals)
    return cloud


def surface_points(mesh: object) -> tuple[np.ndarray, np.ndarray]:
    """Points and unit normals (both (M, 3), mm) of a pyvista surface mesh."""
    poly = mesh
    if "Normals" not in poly.point_data:
        poly = poly.compute_normals(point_normals=True, cell_normals=False, inplace=False)
    return np.asarray(poly.points, dtype=np.float64), np.asarray(poly.point_data["Normals"],
                                                                 dtype=np.float64)


def register_surface(source_mm: np.ndarray, target_mm: np.ndarray, *,
                     target_normals: np.ndarray | None = None,
                     initial_target_from_source: np.ndarray | None = None,
                     distances_mm: Sequence[float] = (20.0, 5.0),
                     iterations_per_stage: int = 20) -> SurfaceRegistrationResult:
    """Point-to-plane ICP of ``source_mm`` onto the surface sampled by ``target_mm``.

    Parameters
    ----------
    source_mm : (N, 3) array
        Swept points (e.g. reference frame, mm).
    target_mm : (M, 3) array
        Dense points of the CT surface (patient LPS mm), e.g. from :func:`surface_points`.
    target_normals : (M, 3) array, optional
        Surface normals at ``target_mm``; estimated from 30 neighbours if missing.
    initial_target_from_source : (4, 4) array, optional
        Coarse alignment (e.g. the paired-point ``patient_from_reference``); default:
        translate the source centroid onto the target centroid.
    distances_mm : sequence of float
        Maximum correspondence distance of each ICP stage, coarse to fine.
    iterations_per_stage : int

    Returns
    -------
    SurfaceRegistrationResult
    """
    import open3d as o3d

    src = as_points(source_mm, name="source_mm")
    tgt = as_points(target_mm, name="target_mm")
    if len(src) < 6 or len(tgt) < 6:
        raise InputError(f"surface registration needs >= 6 points each, got {len(src)} source "
                         f"and {len(tgt)} target points")
    if not distances_mm or any(d <= 0 for d in distances_mm):
        raise InputError("distances_mm must be a non-empty sequence of positive numbers")
    if initial_target_from_source is None:
        init = np.eye(4)
        init[:3, 3] = tgt.mean(axis=0) - src.mean(axis=0)
    else:
        init = as_transform(initial_target_from_source, name="initial_target_from_source",
                            rigid=True, atol=1e-5)
    target_cloud = _point_cloud(tgt, None if target_normals is None
                                else as_points(target_normals, name="target_normals"))
    if target_normals is None:
        target_cloud.estimate_normals(o3d.geometry.KDTreeSearchParamKNN(knn=30))
    source_cloud = _point_cloud(src)
    estimation = o3d.pipelines.registration.TransformationEstimationPointToPlane()
    current = init.copy()
    start = time.perf_counter()
    result = None
    for distance in distances_mm:
        criteria = o3d.pipelines.registration.ICPConvergenceCriteria(
            relative_fitness=1e-6, relative_rmse=1e-6, max_iteration=int(iterations_per_stage))
        result = o3d.pipelines.registration.registration_icp(
            source_cloud, target_cloud, float(distance), current, estimation, criteria)
        current = np.asarray(result.transformation, dtype=np.float64).copy()
    elapsed = time.perf_counter() - start
    # re-orthonormalise (ICP accumulates float error)
    u, _, vt = np.linalg.svd(current[:3, :3])
    current[:3, :3] = u @ vt
    log.debug("ICP: fitness %.3f, inlier RMS %.3f mm, %.3f s", result.fitness,
              result.inlier_rmse, elapsed)
    return SurfaceRegistrationResult(target_from_source=current,
                                     inlier_rms_mm=float(result.inlier_rmse),
                                     fitness=float(result.fitness), n_points=len(src),
                                     time_s=elapsed)


class SweepCollector:
    """Points swept over the skin with the pointer tip, thinned to a minimum spacing.

    Feed it :attr:`guidance.loop.guidance_loop.FrameResult.pointer_tip_reference_mm` while the
    surgeon
    strokes the skin; :attr:`points_mm` is the source of :func:`register_surface`. Samples
    closer than ``min_spacing_mm`` to the previous kept one are dropped (a pointer resting
    in one place would otherwise dominate the fit).
    """

    def __init__(self, *, min_spacing_mm: float = 1.0, max_points: int = 100_000) -> None:
        self.min_spacing_mm = float(min_spacing_mm)
        if self.min_spacing_mm < 0:
            raise InputError(f"min_spacing_mm must be >= 0, got {min_spacing_mm}")
        self.max_points = int(max_points)
        self._points: list[np.ndarray] = []

    def add(self, tip_mm: np.ndarray) -> bool:
        """Add one tip position (mm); returns whether it was kept."""
        tip = as_points(tip_mm, name="tip_mm")[0]
        if len(self._points) >= self.max_points:
            return False
        if self._points and np.linalg.norm(tip - self._points[-1]) < self.min_spacing_mm:
            return False
        self._points.append(tip)
        return True

    def __len__(self) -> int:
        return len(self._points)

    @property
    def points_mm(self) -> np.ndarray:
        """(N, 3) kept points."""
        return np.array(self._points).reshape(-1, 3)

    def clear(self) -> None:
        """Start a new sweep."""
        self._points.clear()


def registration_disagreement_mm(a_from_b: np.ndarray, a_from_b_other: np.ndarray,
                                 points_b_mm: np.ndarray) -> float:
    """Largest distance (mm) between where two registrations put the same points.

    Use it to check a surface registration against the paired-point one at the target
    (and the fiducials).
    """
    first = as_transform(a_from_b, name="a_from_b")
    second = as_transform(a_from_b_other, name="a_from_b_other")
    pts = as_points(points_b_mm, name="points_b_mm")
    diff = pts @ (first[:3, :3] - second[:3, :3]).T + (first[:3, 3] - second[:3, 3])
    return float(np.max(np.linalg.norm(diff, axis=1)))
