"""Robustness sweep: how fragile is a plan's coverage to registration and tracking error?

One coverage number from one pose hides how much a 1-2 mm error moves the 90 % isodose.
:func:`sample_poses` draws applicator poses around the planned one from the session's error
model; :func:`run_sweep` computes the dose of every sample with the fast pencil-beam engine
and the DVH metrics of every structure, and :class:`SweepResult` summarises them: DVH bands
(5-95 %), the probability that the target V90 is at least 95 %, organ Dmax percentiles.

Error model (documented in ``docs/dose.md``), in the applicator frame of the plan:

* registration: a translation of the applicator relative to the anatomy, isotropic Gaussian
  with a 3-D RMS of ``tre_mm`` (the session's predicted TRE; sigma per axis = TRE / sqrt 3);
* tracking: another isotropic translation with 3-D RMS ``tracking_mm`` and a tilt of the
  beam axis (Gaussian, ``tilt_deg`` RMS about a random axis across the beam);
* bevel roll: a rotation about the beam axis (Gaussian sigma ``bevel_roll_deg``), which only
  matters for a bevelled applicator.

All samples are drawn up front from one seed and computed independently (no reuse between
poses), so the result does not depend on how the work is distributed: a Dask cluster of any
size gives exactly the serial numbers. Distribution is Dask's (``dask.distributed``): the
case is scattered to the workers once, chunks of samples are mapped with retries, and a
worker that dies mid-sweep has its chunks recomputed elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial.transform import Rotation

from guidance.treatment.dose_service import HIDDEN_ROI_TYPES
from models.base.errors import InputError
from models.base.validation import as_transform
from models.beams.library import ElectronBeam
from models.evaluation.dvh import (
    choose_oversample,
    compute_dvh,
    split_by_dose_grid,
    structure_bounds_mm,
)
from models.patient.case import Case

#: Percentiles of the bands and organ doses.
PERCENTILES = (5.0, 50.0, 95.0)
#: Target V90 a sample must reach to count as covered (%).
COVERED_V90_PERCENT = 95.0
#: Dose step (Gy) of the common axis the DVH bands are given on.
BAND_STEP_GY = 0.1


@dataclass(frozen=True)
class SweepOptions:
    """What the sweep samples and how the dose is computed.

    Attributes
    ----------
    tre_mm, tracking_mm : float
        3-D RMS of the registration (target registration error) and tracking translations.
    tilt_deg : float
        RMS tilt of the beam axis from tracking.
    bevel_roll_deg : float
        Sigma of the roll about the beam axis.
    samples : int
        Number of sampled poses (the nominal pose is computed in addition).
    seed : int
        Seed of the sampling (same seed, same poses, same result).
    prescription_gy, isodose_percent : float
        Prescription at the isodose, as in the plan.
    grid_mm : float
        Dose grid spacing.
    chunk : int
        Samples per task (a lost worker loses at most this much work).
    """

    tre_mm: float = 1.0
    tracking_mm: float = 0.5
    tilt_deg: float = 0.5
    bevel_roll_deg: float = 0.0
    samples: int = 100
    seed: int = 0
    prescription_gy: float = 10.0
    isodose_percent: float = 90.0
    grid_mm: float = 2.0
    chunk: int = 8

    def __post_init__(self) -> None:
        for name in ("tre_mm", "tracking_mm", "tilt_deg", "bevel_roll_deg"):
            value = getattr(self, name)
            if not np.isfinite(value) or not 0.0 <= value <= 50.0:
                raise InputError(f"{name} must be between 0 and 50, got {value!r}")
        if not 1 <= self.samples <= 100_000:
            raise InputError(f"samples must be between 1 and 100000, got {self.samples!r}")
        if not 1 <= self.chunk <= 10_000:
            raise InputError(f"chunk must be between 1 and 10000, got {self.chunk!r}")
        if not (np.isfinite(self.prescription_gy) and self.prescription_gy > 0):
            raise InputError(f"prescription_gy must be > 0, got {self.prescription_gy!r}")
        if not 10.0 <= self.isodose_percent <= 100.0:
            raise InputError(f"isodose_percent must be in [10, 100], got "
                             f"{self.isodose_percent!r}")
        if not 0.5 <= self.grid_mm <= 5.0:
            raise InputError(f"grid_mm must be between 0.5 and 5, got {self.grid_mm!r}")


def sample_poses(patient_from_applicator: np.ndarray, options: SweepOptions
                 ) -> np.ndarray:
    """``(samples, 4, 4)`` perturbed ``patient_from_applicator`` poses (see the module
    docstring for the error model).

    Examples
    --------
    >>> poses = sample_poses(np.eye(4), SweepOptions(tre_mm=2.0, tracking_mm=0.0,
    ...                                              tilt_deg=0.0, samples=4000))
    >>> rms = np.sqrt(np.mean(np.sum(poses[:, :3, 3] ** 2, axis=1)))
    >>> bool(abs(rms - 2.0) < 0.1), bool(np.allclose(poses[:, :3, :3], np.eye(3)))
    (True, True)
    """
    plan = as_transform(patient_from_applicator, name="patient_from_applicator", rigid=True)
    rng = np.random.default_rng(options.seed)
    n = options.samples
    sigma_mm = np.hypot(options.tre_mm, options.tracking_mm) / np.sqrt(3.0)
    shift_app = rng.normal(0.0, sigma_mm, size=(n, 3))
    # tilt: a rotation about a random axis across the beam (applicator x-y plane)
    axis_angle = rng.uniform(0.0, 2.0 * np.pi, size=n)
    tilt_rad = np.deg2rad(rng.normal(0.0, options.tilt_deg, size=n))
    roll_rad = np.deg2rad(rng.normal(0.0, options.bevel_roll_deg, size=n))
    tilt = Rotation.from_rotvec(np.stack([np.cos(axis_angle), np.sin(axis_angle),
                                          np.zeros(n)], axis=1) * tilt_rad[:, None])
    roll = Rotation.from_rotvec(np.stack([np.zeros(n), np.zeros(n), roll_rad], axis=1))
    app_from_sample = np.tile(np.eye(4), (n, 1, 1))
    app_from_sample[:, :3, :3] = (tilt * roll).as_matrix()
    app_from_sample[:, :3, 3] = shift_app
    return plan[None] @ app_from_sample


@dataclass(frozen=True)
class SampleMetrics:
    """Coverage of one pose.

    Attributes
    ----------
    index : int
        Sample number (-1 = the nominal pose).
    v90_percent, d90_gy : dict name -> float
        Per structure.
    dmax_gy, d2_gy : dict name -> float
        Per structure (0 for a structure outside the dose grid).
    curves : dict name -> (n,) float array
        Cumulative DVH (% volume) on the common dose axis ``k * BAND_STEP_GY``.
    """

    index: int
    v90_percent: dict[str, float]
    d90_gy: dict[str, float]
    dmax_gy: dict[str, float]
    d2_gy: dict[str, float]
    curves: dict[str, np.ndarray] = field(repr=False)


def band_axis_gy(options: SweepOptions) -> np.ndarray:
    """The common dose axis (Gy) of the DVH bands: 0 to 1.6x the 100 % dose."""
    top = 1.6 * options.prescription_gy * 100.0 / options.isodose_percent
    return np.arange(0.0, top + BAND_STEP_GY / 2, BAND_STEP_GY)


def evaluate_poses(case: Case, beam: ElectronBeam, structures: Sequence[str],
                   poses: np.ndarray, indices: Sequence[int], options: SweepOptions
                   ) -> list[SampleMetrics]:
    """Dose and DVH metrics of each pose (one task of the sweep; pure, no state kept).

    Every pose is computed from scratch (no reuse of a nearby pose), so the numbers do not
    depend on the order or the worker that computes them.
    """
    from models.dose.engine import ElectronDoseEngine

    engine = ElectronDoseEngine(case.ct, grid_mm=options.grid_mm, min_move_mm=0.0,
                                min_turn_deg=0.0)
    bounds = {n: structure_bounds_mm(case.ct, case.structures[n].mask) for n in structures}
    # pose-independent: each structure's grid and DVH sampling, once per task
    volumes = {n: case.ct.with_array(case.structures[n].mask) for n in structures}
    oversample = {n: choose_oversample(case.structures[n].mask) for n in structures}
    axis = band_axis_gy(options)
    out = []
    for index, pose in zip(indices, poses, strict=True):
        result = engine.compute(pose, beam, prescription_gy=options.prescription_gy,
                                isodose_percent=options.isodose_percent)
        inside, outside = split_by_dose_grid(result.dose, bounds)
        dvhs = {n: compute_dvh(result.dose, volumes[n], name=n,
                               prescription_gy=options.prescription_gy,
                               isodose_percent=options.isodose_percent, bin_width_gy=0.05,
                               oversample=oversample[n]) for n in inside}
        zero = np.zeros_like(axis)
        curves = {n: zero.copy() for n in outside}
        curves.update({n: np.interp(axis, d.dose_edges_gy, d.cumulative_percent, right=0.0)
                       for n, d in dvhs.items()})
        metrics = {n: d.metrics for n, d in dvhs.items()}
        out.append(SampleMetrics(
            index=int(index),
            v90_percent={n: metrics[n].v90_percent if n in metrics else 0.0
                         for n in structures},
            d90_gy={n: metrics[n].d90_gy if n in metrics else 0.0 for n in structures},
            dmax_gy={n: metrics[n].dmax_gy if n in metrics else 0.0 for n in structures},
            d2_gy={n: metrics[n].d2_gy if n in metrics else 0.0 for n in structures},
            curves=curves))
    return out


@dataclass(frozen=True)
class SweepResult:
    """All samples of a sweep and their summary.

    Attributes
    ----------
    options : SweepOptions
    target : str
    structures : tuple of str
    nominal : SampleMetrics
        The planned pose itself.
    samples : list of SampleMetrics
        In sample order (whatever computed them).
    dose_axis_gy : (n,) array
        Dose axis of the bands.
    """

    options: SweepOptions
    target: str
    structures: tuple[str, ...]
    nominal: SampleMetrics
    samples: list[SampleMetrics]
    dose_axis_gy: np.ndarray = field(repr=False)

    @property
    def p_covered(self) -> float:
        """Share of samples (0-1) with target V90 >= :data:`COVERED_V90_PERCENT`."""
        v90 = np.array([s.v90_percent[self.target] for s in self.samples])
        return float(np.mean(v90 >= COVERED_V90_PERCENT))

    def percentiles(self, metric: str, name: str) -> tuple[float, float, float]:
        """5th, 50th and 95th percentile of ``metric`` (``"v90_percent"``, ``"d90_gy"``,
        ``"dmax_gy"``, ``"d2_gy"``) of structure ``name`` over the samples."""
        values = np.array([getattr(s, metric)[name] for s in self.samples])
        return tuple(float(v) for v in np.percentile(values, PERCENTILES))

    def band(self, name: str) -> np.ndarray:
        """``(3, n)`` DVH band of ``name``: 5th, 50th, 95th percentile volume (%) per dose."""
        curves = np.stack([s.curves[name] for s in self.samples])
        return np.percentile(curves, PERCENTILES, axis=0)

    def summary(self) -> dict[str, float]:
        """Flat ``{"metric": value}`` numbers (for JSON and the report)."""
        out: dict[str, float] = {"samples": float(len(self.samples)),
                                 "p_target_v90_ge_95": self.p_covered,
                                 "nominal.target_v90_percent":
                                     self.nominal.v90_percent[self.target]}
        for name in self.structures:
            for metric in ("v90_percent", "d90_gy") if name == self.target \
                    else ("dmax_gy", "d2_gy"):
                for p, value in zip(PERCENTILES, self.percentiles(metric, name), strict=True):
                    out[f"{name}.{metric}.p{p:g}"] = value
        return out


def _chunks(n: int, size: int) -> list[np.ndarray]:
    return [np.arange(start, min(start + size, n)) for start in range(0, n, size)]


def run_sweep(case: Case, beam: ElectronBeam, patient_from_applicator: np.ndarray,
              options: SweepOptions, *, target: str = "CTV",
              structures: Iterable[str] | None = None, client=None,
              progress: Callable[[int, int], None] | None = None) -> SweepResult:
    """Sample poses, compute every dose and DVH, summarise.

    Parameters
    ----------
    case : Case
    beam : ElectronBeam
    patient_from_applicator : (4, 4) array
        The plan's pose (patient LPS, mm).
    options : SweepOptions
    target : str
        Target structure (must have voxels).
    structures : iterable of str, optional
        Structures to evaluate (default: the target and every structure that is not an
        external contour or a cavity, :data:`~guidance.treatment.dose_service.HIDDEN_ROI_TYPES`).
    client : distributed.Client, optional
        Run on this Dask cluster; None computes in this process (same numbers).
    progress : callable(done, total), optional
        Called as chunks finish.
    """
    if target not in case.structures or not case.structures[target].mask.any():
        raise InputError(f"target {target!r} has no voxels in the case; have: "
                         f"{', '.join(case.structures) or 'no structures'}")
    if structures is None:
        structures = [n for n, s in case.structures.items()
                      if s.roi_type not in HIDDEN_ROI_TYPES]
    names = [target] + [n for n in structures if n != target and n in case.structures]
    plan = as_transform(patient_from_applicator, name="patient_from_applicator", rigid=True)
    poses = sample_poses(plan, options)
    chunks = _chunks(options.samples, options.chunk)
    if client is None:
        nominal = evaluate_poses(case, beam, names, plan[None], [-1], options)[0]
        results = []
        for done, idx in enumerate(chunks, 1):
            results.extend(evaluate_poses(case, beam, names, poses[idx], idx, options))
            if progress is not None:
                progress(done, len(chunks))
    else:
        nominal, results = _run_on_dask(client, case, beam, names, plan, poses, chunks,
                                        options, progress)
    results.sort(key=lambda s: s.index)
    return SweepResult(options=options, target=target, structures=tuple(names),
                       nominal=nominal, samples=results, dose_axis_gy=band_axis_gy(options))


def _run_on_dask(client, case: Case, beam: ElectronBeam, names: list[str], plan: np.ndarray,
                 poses: np.ndarray, chunks: list[np.ndarray], options: SweepOptions,
                 progress: Callable[[int, int], None] | None
                 ) -> tuple[SampleMetrics, list[SampleMetrics]]:
    """Scatter the case once, map the chunks with retries, gather as they finish."""
    from distributed import as_completed

    case_future = client.scatter(case, broadcast=True, hash=False)
    nominal = client.submit(evaluate_poses, case_future, beam, names, plan[None], [-1],
                            options, retries=3, pure=False)
    futures = [client.submit(evaluate_poses, case_future, beam, names, poses[idx], idx,
                             options, retries=3, pure=False) for idx in chunks]
    results: list[SampleMetrics] = []
    for done, future in enumerate(as_completed(futures), 1):
        results.extend(future.result())
        if progress is not None:
            progress(done, len(futures))
    return nominal.result()[0], results
