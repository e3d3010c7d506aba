"""Dose-volume histograms (DVH) and dose metrics for any dose grid and any structure grid.

How it works
------------
A structure is a boolean mask on its own grid (usually the CT grid) given as a
:class:`~models.patient.volume.Volume`; each ``True`` voxel stands for the whole voxel cube, so the
structure volume is ``count * voxel volume`` exactly. The dose is a
:class:`~models.patient.volume.Volume` in Gy on *any* grid (the dose engine's grid, an RTDOSE grid).
Every structure voxel is split into ``n x n x n`` sub-voxels; the dose is interpolated
trilinearly at each sub-voxel centre (zero outside the dose grid) and each sample carries
``voxel volume / n**3``. Dose engines leave air at exactly 0 Gy, and plain trilinear
interpolation would drag the dose of tissue touching air -- the tumour bed under the
applicator -- towards 0; by default the weights are renormalised over the non-zero
neighbours (:func:`interpolate_dose`). :func:`resample_dose` does the same for a whole grid
(e.g. the axial grid of an exported RT Dose). Sub-voxel sampling matters for thin
structures (rind, bowel wall, a CTV a few voxels thick) in the steep electron fall-off,
where one dose value per voxel misreports D98/Dmin; ``oversample=None`` picks ``n`` from
the structure's thickness.

Metrics (Dmean, Dmin, Dmax, D2, D50, D90, D98, V90, V100) come from the weighted samples
themselves, not from the binned histogram, so they carry no bin-width error. The curves
(differential and cumulative, cc) are binned at ``bin_width_gy``.

Conventions
-----------
IORT electron dose is prescribed to the 90 % isodose: 100 % is the dose maximum on the
central axis (the *reference dose*) and ``prescription_gy`` is delivered at the
``isodose_percent`` (default 90) isodose, so ``reference_gy = prescription_gy * 100 /
isodose_percent``. ``Vx`` is the part of the structure receiving at least ``x`` % of the
reference dose: with the default convention V90 is the part receiving at least
``prescription_gy``. ``Dx`` is the minimum dose to the hottest ``x`` % of the volume.

References
----------
* ICRU Report 83 (2010), J. ICRU 10(1): D2, D50, D98 and the homogeneity index
  HI = (D2 - D98) / D50. doi:10.1093/jicru/ndq001
* Shaw E. et al. (1993) RTOG radiosurgery QA guidelines, conformity index PIV / TV.
  doi:10.1016/0360-3016(93)90189-3
* Paddick I. (2000) A simple scoring ratio to index the conformity of radiosurgical
  treatment plans, J. Neurosurg. 93 suppl. 3: 219-222, CI = TV_PIV^2 / (TV * PIV).
  doi:10.3171/jns.2000.93.supplement_3.0219
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from models.base.errors import InputError
from models.base.validation import as_positive
from models.patient.volume import Volume

logger = logging.getLogger(__name__)

#: Upper bound on the number of dose samples held in memory at once.
_CHUNK_POINTS = 1_000_000
#: Automatic oversampling never makes more than this many samples for one structure.
_MAX_AUTO_SAMPLES = 4_000_000


@dataclass(frozen=True)
class DoseMetrics:
    """Scalar dose metrics of one structure.

    All doses in Gy, volumes in cc (cm^3), percentages of the structure volume.
    ``v90_*`` / ``v100_*`` and ``reference_gy`` are NaN when no prescription was given.
    ``homogeneity_index`` is ICRU 83 ``(D2 - D98) / D50`` (NaN if D50 is 0).
    ``outside_dose_grid_percent`` is the part of the structure the dose grid does not cover
    (counted as 0 Gy).
    """

    name: str
    volume_cc: float
    dmean_gy: float
    dmin_gy: float
    dmax_gy: float
    d2_gy: float
    d50_gy: float
    d90_gy: float
    d98_gy: float
    reference_gy: float
    v90_cc: float
    v90_percent: float
    v100_cc: float
    v100_percent: float
    homogeneity_index: float
    outside_dose_grid_percent: float


@dataclass(frozen=True, eq=False)
class DVH:
    """Differential and cumulative DVH of one structure, with its metrics.

    Attributes
    ----------
    name : str
        Structure name.
    dose_edges_gy : numpy.ndarray
        Bin edges, shape ``(nbins + 1,)``, from 0 Gy in steps of ``bin_width_gy``.
    differential_cc : numpy.ndarray
        Volume (cc) whose dose lies in ``[edge[b], edge[b + 1])``, shape ``(nbins,)``.
    cumulative_cc : numpy.ndarray
        Volume (cc) receiving at least ``edge[b]``, shape ``(nbins + 1,)``;
        ``cumulative_cc[0]`` is the structure volume.
    metrics : DoseMetrics
        Metrics computed from the (unbinned) samples.
    oversample : int
        Sub-voxel subdivisions per axis used for this structure.
    """

    name: str
    dose_edges_gy: np.ndarray
    differential_cc: np.ndarray
    cumulative_cc: np.ndarray
    metrics: DoseMetrics
    oversample: int

    @property
    def volume_cc(self) -> float:
        """Structure volume in cc."""
        return self.metrics.volume_cc

    @property
    def cumulative_percent(self) -> np.ndarray:
        """Cumulative DVH in percent of the structure volume, shape ``(nbins + 1,)``."""
        if self.volume_cc <= 0:
            return np.zeros_like(self.cumulative_cc)
        return 100.0 * self.cumulative_cc / self.volume_cc

    def volume_cc_at(self, dose_gy: float) -> float:
        """Volume (cc) receiving at least ``dose_gy``, interpolated on the cumulative curve."""
        return float(np.interp(dose_gy, self.dose_edges_gy, self.cumulative_cc, right=0.0))

    def dose_at_volume_percent(self, volume_percent: float) -> float:
        """Dose ``D_x`` (Gy) covering ``volume_percent`` of the structure, from the curve.

        The metrics in :attr:`metrics` are exact; this reads any other level off the
        binned curve (error at most one bin width).
        """
        if not 0.0 <= volume_percent <= 100.0:
            raise InputError(f"volume_percent must be in [0, 100], got {volume_percent}")
        cum = self.cumulative_percent
        # cum is non-increasing: reverse for np.interp.
        return float(np.interp(volume_percent, cum[::-1], self.dose_edges_gy[::-1]))


@dataclass(frozen=True)
class ConformityIndices:
    """Conformity of the prescription isodose to a target.

    ``target_volume_cc`` TV, ``isodose_volume_cc`` PIV (volume receiving at least the
    prescription, inside ``body`` when given, else over the whole dose grid),
    ``target_covered_cc`` TV_PIV. ``rtog_ci`` = PIV / TV (Shaw 1993), ``paddick_ci`` =
    TV_PIV^2 / (TV * PIV) (Paddick 2000), ``coverage`` = TV_PIV / TV.
    """

    prescription_gy: float
    target_volume_cc: float
    isodose_volume_cc: float
    target_covered_cc: float
    rtog_ci: float
    paddick_ci: float
    coverage: float


@dataclass(frozen=True, eq=False)
class _Samples:
    """Dose samples of one structure: values (Gy), weight per sample (cc).

    ``dose_gy`` holds the interpolated samples; ``far_count`` more samples (voxels wholly
    outside the dose grid) are 0 Gy and are not stored.
    """

    dose_gy: np.ndarray
    far_count: int
    weight_cc: float
    outside_fraction: float
    oversample: int

    @property
    def count(self) -> int:
        """Number of samples, stored or not."""
        return len(self.dose_gy) + self.far_count

    def sorted_all(self) -> np.ndarray:
        """Every sample, zeros of the far voxels included, in ascending order."""
        near = np.sort(self.dose_gy)
        if not self.far_count:
            return near
        at = int(np.searchsorted(near, 0.0))
        return np.concatenate([near[:at], np.zeros(self.far_count), near[at:]])


def structure_thickness_voxels(mask: np.ndarray) -> float:
    """Largest inscribed-sphere diameter of a boolean mask, in voxels (0 for empty)."""
    mask = np.asarray(mask, dtype=bool)
    box = _bounding_box(mask)
    if box is None:
        return 0.0
    padded = np.pad(mask[box], 1)
    return float(2.0 * ndimage.distance_transform_edt(padded).max())


def _bounding_box(mask: np.ndarray) -> tuple[slice, ...] | None:
    """Slices of the smallest box holding every True voxel (None if there is none)."""
    boxes = ndimage.find_objects(mask.astype(np.uint8, copy=False))
    return boxes[0] if boxes and boxes[0] is not None else None


def choose_oversample(mask: np.ndarray) -> int:
    """Sub-voxel subdivisions per axis for a structure: more for thin structures.

    Thickness below 3 voxels -> 4, below 6 -> 3, below 12 -> 2, else 1; reduced so that
    the structure never yields more than a few million samples.
    """
    count = int(np.count_nonzero(mask))
    if count * 8 > _MAX_AUTO_SAMPLES:
        return 1  # large structure: no room for sub-samples, skip the distance transform
    thickness = structure_thickness_voxels(mask)
    if thickness < 3:
        n = 4
    elif thickness < 6:
        n = 3
    elif thickness < 12:
        n = 2
    else:
        n = 1
    while n > 1 and count * n**3 > _MAX_AUTO_SAMPLES:
        n -= 1
    return n


def _check_volume(value: Any, *, name: str) -> Volume:
    if not isinstance(value, Volume):
        raise TypeError(f"{name} must be a Volume, got {type(value).__name__}")
    return value


def interpolate_dose(dose_array: np.ndarray, kji: np.ndarray, *,
                     zero_is_unknown: bool = True) -> np.ndarray:
    """Trilinear dose at continuous indices, optionally skipping zero-dose neighbours.

    Parameters
    ----------
    dose_array : numpy.ndarray
        Dose (Gy), shape ``(nk, nj, ni)``.
    kji : numpy.ndarray
        ``(3, N)`` continuous indices (k, j, i) inside the grid (clamped by the caller).
    zero_is_unknown : bool, default True
        Dose engines leave air and the region they did not compute at exactly 0 Gy;
        trilinear interpolation across such a voxel drags the dose of tissue next to air
        (the tumour bed under the applicator) towards 0. With this option the weights
        are renormalised over the non-zero neighbours (normalised convolution, Knutsson &
        Westin 1993, doi:10.1109/CVPR.1993.341081); a point whose neighbours are all zero
        gets 0. Where the dose truly falls to 0 the error is at most the dose of the last
        non-zero voxel (under ~1 % of the maximum for the electron engine's margins).
    """
    return _DoseInterpolator(dose_array, zero_is_unknown)(kji)


class _DoseInterpolator:
    """:func:`interpolate_dose` with the support map computed once for many calls."""

    def __init__(self, dose_array: np.ndarray, zero_is_unknown: bool) -> None:
        self.dose = np.asarray(dose_array, dtype=np.float64)
        self.support = (self.dose != 0).astype(np.float64) if zero_is_unknown else None

    def __call__(self, kji: np.ndarray) -> np.ndarray:
        values = ndimage.map_coordinates(self.dose, kji, order=1, mode="nearest")
        if self.support is None:
            return values
        support = ndimage.map_coordinates(self.support, kji, order=1, mode="nearest")
        out = np.zeros_like(values)
        known = support > 1e-12
        out[known] = values[known] / support[known]
        return out


def resample_dose(dose: Volume, grid: Volume, *, zero_is_unknown: bool = True) -> Volume:
    """Dose resampled onto another grid with :func:`interpolate_dose` (0 outside).

    Use it instead of :meth:`Volume.resample_like` for dose that is 0 Gy in air, so
    tissue next to air keeps its dose on the new grid.
    """
    _check_volume(dose, name="dose")
    _check_volume(grid, name="grid")
    nk, nj, ni = grid.shape
    k, j, i = np.meshgrid(np.arange(nk), np.arange(nj), np.arange(ni), indexing="ij")
    ijk = np.stack([i.ravel(), j.ravel(), k.ravel()], axis=1).astype(np.float64)
    dose_from_grid = dose.voxel_from_patient @ grid.patient_from_voxel
    dijk = ijk @ dose_from_grid[:3, :3].T + dose_from_grid[:3, 3]
    upper = np.array(dose.shape[::-1], dtype=np.float64) - 1.0
    outside = np.any((dijk < -0.5) | (dijk > upper + 0.5), axis=1)
    np.clip(dijk, 0.0, upper, out=dijk)
    values = interpolate_dose(dose.array, dijk[:, ::-1].T, zero_is_unknown=zero_is_unknown)
    values[outside] = 0.0
    return grid.with_array(values.reshape(grid.shape))


def _sample_structure(dose: Volume, structure: Volume, oversample: int | None, *,
                      zero_is_unknown: bool = True) -> _Samples:
    """Interpolate the dose at sub-voxel centres of every structure voxel.

    Voxels whose whole cube lies outside the dose grid are counted as 0 Gy without being
    visited (a body contour is mostly outside a beam's dose grid).
    """
    mask = np.asarray(structure.array).astype(bool, copy=False)
    n = choose_oversample(mask) if oversample is None else int(oversample)
    if n < 1:
        raise InputError(f"oversample must be >= 1, got {oversample}")
    weight_cc = structure.voxel_volume_mm3 / n**3 / 1000.0
    per_voxel = n**3
    total = int(np.count_nonzero(mask))
    if total == 0:
        return _Samples(np.zeros(0), 0, weight_cc, 0.0, n)
    # structure voxel index -> dose voxel index, one affine.
    dose_from_struct = dose.voxel_from_patient @ structure.patient_from_voxel
    rot = dose_from_struct[:3, :3]
    shift = dose_from_struct[:3, 3]
    upper = np.array(dose.shape[::-1], dtype=np.float64) - 1.0
    origin = _dose_box_in_structure(dose_from_struct, upper, mask.shape)
    kji = np.argwhere(mask[origin[0]:origin[3], origin[1]:origin[4], origin[2]:origin[5]])
    ijk = (kji[:, ::-1] + np.array([origin[2], origin[1], origin[0]])).astype(np.float64)
    # Half a voxel beyond the last centre still belongs to the dose grid; a voxel is near
    # if its cube (half a structure voxel around the centre) may reach that.
    reach = 0.5 + 0.5 * np.abs(rot).sum(axis=1)
    centres = ijk[:, :1] * rot[:, 0] + ijk[:, 1:2] * rot[:, 1] + ijk[:, 2:] * rot[:, 2] + shift
    ijk = ijk[np.all((centres > -reach) & (centres < upper + reach), axis=1)]
    offsets_1d = (np.arange(n) + 0.5) / n - 0.5
    oi, oj, ok = np.meshgrid(offsets_1d, offsets_1d, offsets_1d, indexing="ij")
    offsets = np.stack([oi.ravel(), oj.ravel(), ok.ravel()], axis=1)
    interpolate = _DoseInterpolator(dose.array, zero_is_unknown)
    per_chunk = max(1, _CHUNK_POINTS // per_voxel)
    values = np.empty(len(ijk) * per_voxel)
    far_count = (total - len(ijk)) * per_voxel
    outside = far_count
    for start in range(0, len(ijk), per_chunk):
        block = ijk[start:start + per_chunk]
        pts = (block[:, None, :] + offsets[None, :, :]).reshape(-1, 3)
        dijk = pts @ rot.T + shift
        out_mask = np.any((dijk < -0.5) | (dijk > upper + 0.5), axis=1)
        outside += int(np.count_nonzero(out_mask))
        np.clip(dijk, 0.0, upper, out=dijk)  # the edge half voxel takes the edge value
        vals = interpolate(dijk[:, ::-1].T)
        vals[out_mask] = 0.0
        lo = start * per_voxel
        values[lo:lo + len(vals)] = vals
    fraction = outside / (total * per_voxel)
    if fraction > 0:
        logger.debug("%.1f %% of the structure lies outside the dose grid (counted as 0 Gy)",
                     100.0 * fraction)
    return _Samples(values, far_count, weight_cc, fraction, n)


def _dose_box_in_structure(dose_from_struct: np.ndarray, upper: np.ndarray,
                           shape: tuple[int, ...]) -> tuple[int, ...]:
    """(k0, j0, i0, k1, j1, i1) of the structure-grid box that can touch the dose grid."""
    struct_from_dose = np.linalg.inv(dose_from_struct)
    corners = np.array([[i, j, k] for i in (-0.5, upper[0] + 0.5)
                        for j in (-0.5, upper[1] + 0.5) for k in (-0.5, upper[2] + 0.5)])
    ijk = corners @ struct_from_dose[:3, :3].T + struct_from_dose[:3, 3]
    lo = np.floor(ijk.min(axis=0)).astype(int) - 1
    hi = np.ceil(ijk.max(axis=0)).astype(int) + 2
    size = np.array(shape[::-1])  # (ni, nj, nk)
    lo = np.clip(lo, 0, size)
    hi = np.clip(hi, 0, size)
    return (int(lo[2]), int(lo[1]), int(lo[0]), int(hi[2]), int(hi[1]), int(hi[0]))


def _quantile_dose(sorted_dose: np.ndarray, volume_percent: float) -> float:
    """D_x from ascending sorted samples of equal weight: minimum dose to the hottest x %.

    Sample ``m`` (0-based, ascending) stands for the volume fraction ``[m/N, (m+1)/N)``
    counted from the cold end; D_x is read at the cold-end fraction ``1 - x/100`` with
    linear interpolation between sample midpoints.
    """
    count = len(sorted_dose)
    position = (1.0 - volume_percent / 100.0) * count - 0.5
    position = min(max(position, 0.0), count - 1.0)
    low = math.floor(position)
    high = min(low + 1, count - 1)
    frac = position - low
    return float(sorted_dose[low] * (1.0 - frac) + sorted_dose[high] * frac)


def _reference_gy(prescription_gy: float | None, isodose_percent: float) -> float:
    if prescription_gy is None:
        return math.nan
    rx = as_positive(prescription_gy, name="prescription_gy")
    iso = as_positive(isodose_percent, name="isodose_percent")
    return rx * 100.0 / iso


def compute_dvh(dose: Volume, structure: Volume, *, name: str = "",
                prescription_gy: float | None = None, isodose_percent: float = 90.0,
                bin_width_gy: float = 0.01, oversample: int | None = None,
                zero_is_unknown: bool = True) -> DVH:
    """DVH and metrics of one structure in a dose distribution.

    Parameters
    ----------
    dose : Volume
        Dose in Gy on its own grid (any spacing, orientation and extent).
    structure : Volume
        Boolean mask (nonzero = inside) on its own grid, e.g. ``case.ct.with_array(mask)``.
    name : str
        Structure name carried into the result.
    prescription_gy : float, optional
        Prescribed dose at the ``isodose_percent`` isodose; enables V90/V100.
    isodose_percent : float, default 90
        Isodose level receiving the prescription (100 % = reference dose).
    bin_width_gy : float, default 0.01
        Histogram bin width for the curves.
    oversample : int, optional
        Sub-voxel subdivisions per axis (``n**3`` dose samples per voxel); ``None`` picks
        from the structure's thickness (:func:`choose_oversample`).
    zero_is_unknown : bool, default True
        Interpolate over non-zero dose voxels only (see :func:`interpolate_dose`).

    Returns
    -------
    DVH

    Examples
    --------
    >>> dose = Volume.from_grid(np.full((4, 4, 4), 2.0), spacing_mm=(1, 1, 1))
    >>> mask = dose.with_array(np.ones((4, 4, 4), bool))
    >>> round(compute_dvh(dose, mask, prescription_gy=2.0, isodose_percent=100)
    ...       .metrics.v100_percent, 6)
    100.0
    """
    _check_volume(dose, name="dose")
    _check_volume(structure, name="structure")
    width = as_positive(bin_width_gy, name="bin_width_gy")
    reference = _reference_gy(prescription_gy, isodose_percent)
    samples = _sample_structure(dose, structure, oversample, zero_is_unknown=zero_is_unknown)
    dose_gy = samples.sorted_all()
    total_cc = len(dose_gy) * samples.weight_cc
    top = float(dose_gy[-1]) if len(dose_gy) else 0.0
    nbins = max(1, math.ceil(top / width + 1e-9) + 1)
    edges = np.arange(nbins + 1) * width
    counts, _ = np.histogram(np.clip(dose_gy, 0.0, None), bins=edges)
    differential = counts * samples.weight_cc
    cumulative = np.concatenate([np.cumsum(differential[::-1])[::-1], [0.0]])
    metrics = _metrics(name, dose_gy, samples, total_cc, reference)
    return DVH(name=name, dose_edges_gy=edges, differential_cc=differential,
               cumulative_cc=cumulative, metrics=metrics, oversample=samples.oversample)


def _metrics(name: str, dose_gy: np.ndarray, samples: _Samples, total_cc: float,
             reference: float) -> DoseMetrics:
    if len(dose_gy) == 0:
        nan = math.nan
        return DoseMetrics(name, 0.0, nan, nan, nan, nan, nan, nan, nan, reference,
                           nan, nan, nan, nan, nan, 0.0)

    def volume_at(level_gy: float) -> tuple[float, float]:
        if math.isnan(level_gy):
            return math.nan, math.nan
        count = len(dose_gy) - int(np.searchsorted(dose_gy, level_gy, side="left"))
        return count * samples.weight_cc, 100.0 * count / len(dose_gy)

    d2, d50, d90, d98 = (_quantile_dose(dose_gy, p) for p in (2.0, 50.0, 90.0, 98.0))
    v90_cc, v90_pc = volume_at(0.9 * reference)
    v100_cc, v100_pc = volume_at(reference)
    hi = (d2 - d98) / d50 if d50 > 0 else math.nan
    return DoseMetrics(
        name=name, volume_cc=total_cc, dmean_gy=float(dose_gy.mean()),
        dmin_gy=float(dose_gy[0]), dmax_gy=float(dose_gy[-1]),
        d2_gy=d2, d50_gy=d50, d90_gy=d90, d98_gy=d98, reference_gy=reference,
        v90_cc=v90_cc, v90_percent=v90_pc, v100_cc=v100_cc, v100_percent=v100_pc,
        homogeneity_index=hi, outside_dose_grid_percent=100.0 * samples.outside_fraction)


def conformity_indices(dose: Volume, target: Volume, *, prescription_gy: float,
                       body: Volume | None = None, oversample: int | None = None,
                       zero_is_unknown: bool = True) -> ConformityIndices:
    """RTOG and Paddick conformity of the prescription isodose to a target.

    Parameters
    ----------
    dose : Volume
        Dose in Gy on any grid.
    target : Volume
        Boolean target mask on its own grid.
    prescription_gy : float
        Isodose level defining the prescription isodose volume (PIV).
    body : Volume, optional
        Boolean body mask; PIV is counted inside it (recommended: the electron beam also
        doses air and the couch in a dose grid). Without it PIV is counted over the whole
        dose grid at the dose grid's resolution.
    oversample, zero_is_unknown
        As in :func:`compute_dvh`.
    """
    _check_volume(dose, name="dose")
    _check_volume(target, name="target")
    rx = as_positive(prescription_gy, name="prescription_gy")
    tgt = _sample_structure(dose, target, oversample, zero_is_unknown=zero_is_unknown)
    tv = tgt.count * tgt.weight_cc
    tv_piv = int(np.count_nonzero(tgt.dose_gy >= rx)) * tgt.weight_cc
    if body is not None:
        _check_volume(body, name="body")
        body_samples = _sample_structure(dose, body, oversample,
                                         zero_is_unknown=zero_is_unknown)
        piv = int(np.count_nonzero(body_samples.dose_gy >= rx)) * body_samples.weight_cc
    else:
        piv = int(np.count_nonzero(np.asarray(dose.array) >= rx)) * dose.voxel_volume_mm3 / 1e3
    rtog = piv / tv if tv > 0 else math.nan
    paddick = tv_piv**2 / (tv * piv) if tv > 0 and piv > 0 else 0.0 if tv > 0 else math.nan
    coverage = tv_piv / tv if tv > 0 else math.nan
    return ConformityIndices(prescription_gy=rx, target_volume_cc=tv, isodose_volume_cc=piv,
                             target_covered_cc=tv_piv, rtog_ci=rtog, paddick_ci=paddick,
                             coverage=coverage)


def structure_bounds_mm(volume: Volume, mask: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray] | None:
    """Axis-aligned LPS box (mm) of a mask's voxels on ``volume``'s grid, padded by one voxel;
    None if the mask is empty."""
    idx = [np.nonzero(np.any(mask, axis=axes))[0] for axes in ((0, 1), (0, 2), (1, 2))]
    if any(len(i) == 0 for i in idx):
        return None
    (i0, i1), (j0, j1), (k0, k1) = ((a[0] - 1, a[-1] + 1) for a in idx)
    corners = np.array([[i, j, k] for i in (i0, i1) for j in (j0, j1) for k in (k0, k1)],
                       dtype=np.float64)
    pts = volume.voxel_to_patient(corners)
    return pts.min(axis=0), pts.max(axis=0)


def split_by_dose_grid(dose: Volume,
                       bounds: Mapping[str, tuple[np.ndarray, np.ndarray] | None]
                       ) -> tuple[list[str], list[str]]:
    """(names whose box meets the dose grid, names entirely outside it: 0 Gy, no DVH).

    ``bounds`` maps a structure name to :func:`structure_bounds_mm` (None = empty mask).
    """
    lo, hi = dose.bounds_mm()
    inside, outside = [], []
    for name, box in bounds.items():
        meets = box is not None and bool(np.all(box[0] <= hi) and np.all(box[1] >= lo))
        (inside if meets else outside).append(name)
    return inside, outside


def structure_dvhs(dose: Volume, grid: Volume, masks: Mapping[str, Any], *,
                   names: Iterable[str] | None = None, prescription_gy: float | None = None,
                   isodose_percent: float = 90.0, bin_width_gy: float = 0.01,
                   oversample: int | None = None, zero_is_unknown: bool = True
                   ) -> dict[str, DVH]:
    """DVHs of several structures sharing one grid (e.g. ``case.ct`` and its structures).

    ``masks`` maps a name to a boolean array of ``grid.shape`` or to an object with a
    ``mask`` attribute (a case's ``Structure``). ``names`` selects and orders them.
    """
    _check_volume(grid, name="grid")
    selected = list(masks) if names is None else list(names)
    out: dict[str, DVH] = {}
    for key in selected:
        if key not in masks:
            raise KeyError(f"no structure named {key!r}; have: {', '.join(masks)}")
        mask = getattr(masks[key], "mask", masks[key])
        out[key] = compute_dvh(dose, grid.with_array(np.asarray(mask, dtype=bool)), name=key,
                               prescription_gy=prescription_gy,
                               isodose_percent=isodose_percent, bin_width_gy=bin_width_gy,
                               oversample=oversample, zero_is_unknown=zero_is_unknown)
    return out
