"""Electron pencil-beam dose on a beam-aligned grid (GPU-free, numba with a numpy twin).

Model (Hogstrom, Mills & Almond 1981, doi:10.1088/0031-9155/26/3/008, simplified)
-------------------------------------------------------------------------------------
* The aperture (the applicator's circular cross-section, radius R) is divided into square
  pencils of the grid spacing ``h``, one per grid column, weighted by the open fraction of
  their cell. A pencil at ``(x, y)`` leaves the applicator at its own depth
  ``z0 = y tan(bevel)`` (bevelled end face, see :mod:`models.beams.applicator`).
* Along each pencil's central ray the water-equivalent depth ``zeff(z) = int_z0^z rsp dz``
  integrates the relative stopping power from the CT (HU -> RSP table,
  :mod:`models.dose.materials`), with a bolus layer of thickness ``bolus_mm`` right under
  the end face and a shielding disc (metal slab of water-equivalent thickness
  ``t * water_equivalent_per_mm``) where present.
* Central dose of a pencil: the broad-beam depth dose of the reference applicator in water
  ``g(zeff)`` (beam data), times the inverse-square change of the pencil's entry point
  ``((VSD + z - s) / (VSD + z))^2`` (``s`` = geometric depth where the pencil enters
  matter, VSD the virtual source distance), times the backscatter factor upstream of a
  disc: ``1 + (EBF(E_d) - 1) exp(-(zeff_d - zeff) / lambda)`` with ``E_d = E0 (1 -
  zeff_d / Rp)`` (Harder's mean energy at depth).
* Lateral spread: ``sigma^2 = sigma0^2 + (sigma_theta (z - z0))^2 + sigma_MCS^2`` with the
  Fermi-Eyges multiple-scattering term integrated along the pencil's path with the
  geometric lever arm (:mod:`models.dose.scattering`), held at its R50 value deeper
  (Fermi-Eyges diverges at the end of range, where electrons are fully diffused). Behind
  tissue that scatters more than it stops the sigma narrows where the depth dose falls:
  the electrons far off the axis travelled longer (:func:`tails_ranging_out`). Each
  pencil's dose in a plane is the square beamlet convolved with that Gaussian (erf profile).
* Dose is zero in air (RSP < :data:`AIR_RSP`), inside the applicator tube and inside the
  disc. It is normalised so that 100 % is the maximum on the central axis (beam axis),
  leaving out a disc's backscatter (that hot spot shows above 100 %); the prescription is
  delivered at ``isodose_percent`` (default 90 %). Monitor units use the reference output
  times the output factor of the applicator from the machine's ``output_factors.table`` (an
  :class:`InputError` when it has none); ``DoseResult.mu_estimated`` flags MU whose factor
  is not measured.

* At lateral edges of tissue that scatters more than water (bone) the dose is multiplied
  by the fluence of a uniform field redefined plane by plane on the grid columns
  (:func:`lateral_redistribution`, Shiu & Hogstrom 1991; empirical strength), its excess
  with the depth dose of the columns it was scattered from. Below a disc
  the electron part of the dose (not the bremsstrahlung tail) is multiplied by the
  diffusion-theory share of electrons that come through
  (:func:`disc_transmission`).

Limits: central-axis approximation of heterogeneities (the pencils' own spread at a bone
edge; the redistribution above is a fluence factor of one strength at every depth), no
lateral transport in the disc, dose beyond the electron range (bremsstrahlung tail under
~1 %) is not computed past ``R50 + 2 (Rp - R50)`` + 5 mm.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

from models.base.beside import run_beside, share_with_helper
from models.base.cancel import checkpoint
from models.base.errors import InputError
from models.base.validation import as_positive, as_transform
from models.beams.applicator import Applicator
from models.beams.depth_dose import TABLE_STEP_MM, lookup_uniform
from models.beams.library import (
    BeamLibrary,
    ElectronBeam,
    EnergyData,
    LateralSpread,
    MachineData,
    default_library,
)
from models.dose import kernels
from models.dose.depth_sums import cumsum_planes
from models.dose.materials import (
    ShieldMaterial,
    backscatter_constants,
    shield_material,
    tissue_lookup,
)
from models.dose.scattering import (
    fermi_eyges_along_path,
    fermi_eyges_sigma_mm,
    scattering_power_per_mm,
)
from models.patient.volume import Volume

log = logging.getLogger(__name__)

#: Beams whose estimated output factor was already logged (once per beam, not per frame).
_WARNED_ESTIMATED: set[ElectronBeam] = set()

#: Relative stopping power below which a voxel is air and gets no dose.
AIR_RSP = 0.05

#: Water depth (mm) at which a pencil counts as having entered matter.
ENTRY_WET_MM = 0.5

#: Lateral grid margin beyond the aperture, in sigmas of the widest pencil (at R50 and
#: deeper): the dose there is under ~1 % of the maximum.
LATERAL_MARGIN_SIGMAS = 2.5

#: Geometric grid depth in units of the cut-off water depth (covers fat, RSP 0.95); the
#: grid doubles, up to :data:`MAX_DEPTH_FACTOR`, while pencils are still in matter short of Rp.
BASE_DEPTH_FACTOR = 1.1
MAX_DEPTH_FACTOR = 4.4

#: The lateral grid margin grows with the path's sigma up to this factor of water's.
MAX_SIGMA_WIDENING = 3.0

#: Relative step of the sigma ladder of the fast spreading kernel (sigma error <= 1 %).
SIGMA_STEP = 0.02

#: A beam whose pencils all cross less water-equivalent depth than this faces no tissue.
MIN_TISSUE_DEPTH_MM = 2.0

#: Share (%) of the beam path outside the CT above which a warning is logged.
OUTSIDE_CT_WARN_PERCENT = 10.0

#: Lateral spread (mm, one axis) of the applicator-scatter halo (see ``ElectronModel``).
HALO_SIGMA_MM = 12.0

#: Allowed backends for the hot loops.
BACKENDS = ("numba", "numpy")

#: What the dose is reported as: dose to water (default) or to the local medium.
DOSE_TO = ("water", "medium")

#: Which model computed a dose: the full heterogeneity model, or the fast preview.
MODELS = ("full", "preview")

#: Grid spacing (mm) of the preview: the same physics on pencils and voxels at least this
#: coarse (~1/8 of the voxels of a 2 mm grid), for the applicator being dragged.
PREVIEW_GRID_MM = 4.0


@dataclass(frozen=True)
class ShieldingDisc:
    """A metal disc under the target, normal to the beam axis (centred on it by default).

    Parameters
    ----------
    material : str
        ``"lead"`` or ``"steel"`` (see ``assets/beams/materials.json``).
    diameter_mm, thickness_mm : float
        Disc size (mm).
    depth_mm : float
        Distance (mm) along the beam axis from the end-face centre to the disc's upstream
        face (applicator frame ``z``).
    centre_x_mm, centre_y_mm : float
        Disc centre off the beam axis (applicator frame ``x``, ``y``; default on the axis).
        A disc placed in the patient (:func:`models.dose.disc.disc_in_beam`) sets them.
    """

    material: str = "lead"
    diameter_mm: float = 80.0
    thickness_mm: float = 3.0
    depth_mm: float = 30.0
    centre_x_mm: float = 0.0
    centre_y_mm: float = 0.0


@dataclass(frozen=True, eq=False)
class ElectronModel:
    """Everything the kernel needs for one beam, precomputed once (frozen options).

    ``depth_mm``/``dose_fraction``: broad-beam central-axis depth dose (fraction of max);
    ``sigma_mcs_mm``: Fermi-Eyges spread in water on the same depths (held at its R50
    value deeper); ``scatter_power_per_mm``: linear angular scattering power T of water
    (rad^2/mm) at those water depths. ``fluence_radius`` / ``fluence`` (K,): relative
    fluence of the pencils against their distance from the applicator axis in units of the
    aperture radius (piecewise linear; None: uniform), plus ``fluence_tilt(r) y / R``
    (heel-to-toe change of a bevel, toe at +y). ``sigma0_mm``: the pencils' spread at the
    end face fitted for this beam (None: the machine's). ``halo_fraction``: weight of the
    broad low-dose halo of electrons scattered by the applicator wall, added to every
    plane as the plane's dose blurred laterally by :data:`HALO_SIGMA_MM`.
    """

    beam: ElectronBeam
    machine: MachineData
    energy: EnergyData
    applicator: Applicator
    depth_mm: np.ndarray
    dose_fraction: np.ndarray
    sigma_mcs_mm: np.ndarray
    scatter_power_per_mm: np.ndarray
    cut_depth_mm: float
    fluence_radius: np.ndarray | None = None
    fluence: np.ndarray | None = None
    fluence_tilt: np.ndarray | None = None
    sigma0_mm: float | None = None
    halo_fraction: float = 0.0

    @property
    def spread(self) -> LateralSpread:
        """Lateral spread parameters of the machine (``sigma0_mm`` fitted per beam if set)."""
        if self.sigma0_mm is None:
            return self.machine.spread
        return replace(self.machine.spread, sigma0_mm=self.sigma0_mm)


@dataclass(eq=False)
class DoseResult:
    """Dose of one electron beam at one pose.

    Attributes
    ----------
    dose : Volume
        Dose in Gy on a beam-aligned grid (its own ``patient_from_voxel`` to LPS mm; the
        grid's i, j, k axes are the applicator's x, y, z).
    beam : ElectronBeam
        The beam.
    patient_from_applicator : numpy.ndarray
        4x4 pose used.
    prescription_gy : float
        Dose delivered at the ``isodose_percent`` isodose.
    isodose_percent : float
        Prescription isodose (% of the central-axis maximum).
    dmax_gy : float
        100 % level: maximum dose on the central axis (Gy).
    mu : float
        Monitor units for this prescription (reference output x output factor).
    output_factor : float
        Output factor of the applicator relative to the reference applicator.
    grid_mm : float
        Grid spacing (mm).
    compute_ms : float
        Wall time of the computation (ms).
    mu_estimated : bool
        True when the output factor behind ``mu`` is not measured (estimated or
        model-derived, see ``output_factors`` in the machine file): the MU must not be used
        to treat without a measured factor; callers should flag or block it.
    outside_ct_percent : float
        Share of the pencils' path inside the dose grid that lies outside the CT (treated as
        air, so no dose there); above :data:`OUTSIDE_CT_WARN_PERCENT` a warning is logged.
    dose_to : {"water", "medium"}
        What ``dose`` is: dose to water (default) or dose to the local medium.
    model : {"full", "preview"}
        Which model computed it: the full heterogeneity model or the fast preview used
        while the applicator is being dragged (see :data:`MODELS`).
    """

    dose: Volume
    beam: ElectronBeam
    patient_from_applicator: np.ndarray
    prescription_gy: float
    isodose_percent: float
    dmax_gy: float
    mu: float
    output_factor: float
    grid_mm: float
    compute_ms: float
    outside_ct_percent: float = 0.0
    mu_estimated: bool = False
    dose_to: str = "water"
    model: str = "full"

    def isodose_gy(self, percent: float | None = None) -> float:
        """Dose (Gy) of an isodose level in % of the central-axis maximum (default: Rx)."""
        level = self.isodose_percent if percent is None else float(percent)
        return self.dmax_gy * level / 100.0

    def dose_on(self, grid: Volume) -> Volume:
        """This dose resampled (trilinear, 0 outside) onto another grid, e.g. the CT's.

        Air stays exactly 0 Gy, so tissue voxels next to air are pulled down by their air
        neighbours; for DVHs use :func:`models.evaluation.dvh.resample_dose`, which
        interpolates over the non-zero neighbours only.
        """
        return self.dose.resample_like(grid, order=1, fill_value=0.0)

    @property
    def applicator_from_voxel(self) -> np.ndarray:
        """4x4 affine from dose-grid index (i, j, k, 1) to applicator-frame mm."""
        return np.linalg.inv(self.patient_from_applicator) @ self.dose.patient_from_voxel


@lru_cache(maxsize=64)
def electron_model(beam: ElectronBeam, library: BeamLibrary | None = None) -> ElectronModel:
    """Validate ``beam`` against the library and precompute its depth-dose and spread tables.

    A machine commissioned per applicator (:meth:`MachineData.commissioned_beam`) gives the
    beam its own broad-beam depth dose, spread scale and fluence profile; otherwise the
    reference applicator's depth dose of the energy is used.
    """
    lib = library if library is not None else default_library()
    machine = lib.validate(beam)
    energy = machine.energy(beam.energy_mev)
    fitted = machine.commissioned_beam(beam)
    if fitted is None:
        depth, dose = bevel_depth_dose(energy.depth_mm, energy.dose_percent, beam.bevel_deg)
        return build_electron_model(beam, machine, depth, dose)
    return build_electron_model(beam, machine, fitted.depth_mm, fitted.dose_percent,
                                sigma_scale=fitted.sigma_scale,
                                fluence_radius=fitted.fluence_radius, fluence=fitted.fluence,
                                fluence_tilt=fitted.fluence_tilt, sigma0_mm=fitted.sigma0_mm,
                                halo_fraction=fitted.halo_fraction)


def bevel_depth_dose(depth_mm: np.ndarray, dose_percent: np.ndarray, bevel_deg: float
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Pencil depth dose of a bevelled beam from the flat beam's (uncommissioned bevels).

    A pencil reaches the clinical-axis depth ``d`` after ``d / cos(bevel)`` of water, which
    would shrink the R90-R50 fall-off by ``cos(bevel)``; but beyond R90 the electrons have
    lost their direction, so the fall-off's width along the surface normal is the flat
    beam's (the LIAC Monte Carlo: within 0-14 % at 15-45 deg). Beyond the curve's R90 the
    pencil curve is stretched by ``1 / cos(bevel)``:
    ``g_b(L) = g(R90 + (L - R90) cos(bevel))``. A flat beam is returned unchanged.
    """
    depth = np.asarray(depth_mm, dtype=np.float64)
    dose = np.asarray(dose_percent, dtype=np.float64)
    cos_b = math.cos(math.radians(float(bevel_deg)))
    if bevel_deg <= 0.0:
        return depth, dose
    peak = int(np.argmax(dose))
    below = np.nonzero(dose[peak:] < 0.9 * dose[peak])[0]
    if below.size == 0:
        return depth, dose
    k = peak + int(below[0])
    r90 = float(np.interp(0.9 * dose[peak], dose[k - 1:k + 1][::-1], depth[k - 1:k + 1][::-1]))
    step = float(depth[1] - depth[0]) if depth.size > 1 else 0.5
    out_depth = np.arange(0.0, r90 + (depth[-1] - r90) / cos_b + 1e-9, step)
    source = np.where(out_depth <= r90, out_depth, r90 + (out_depth - r90) * cos_b)
    return out_depth, np.interp(source, depth, dose)


def build_electron_model(beam: ElectronBeam, machine: MachineData, depth_mm: np.ndarray,
                         dose_percent: np.ndarray, *, sigma_scale: float = 1.0,
                         fluence_radius: np.ndarray | None = None,
                         fluence: np.ndarray | None = None,
                         fluence_tilt: np.ndarray | None = None,
                         sigma0_mm: float | None = None,
                         halo_fraction: float = 0.0) -> ElectronModel:
    """Model tables of ``beam`` from a broad-beam depth dose (the commissioning fit's entry).

    Parameters
    ----------
    depth_mm, dose_percent : numpy.ndarray
        (N,) pencil (broad-beam) central-axis depth dose in water, % of its maximum.
    sigma_scale : float, default 1
        Factor on the Fermi-Eyges multiple-scattering spread.
    fluence_radius, fluence, fluence_tilt : numpy.ndarray, optional
        (K,) relative fluence against radius / aperture radius, and its heel-to-toe term.
    sigma0_mm : float, optional
        Spread of the pencils at the end face (mm); default the machine's.
    halo_fraction : float, default 0
        Weight of the applicator-scatter halo (see :class:`ElectronModel`).
    """
    energy = machine.energy(beam.energy_mev)
    depth = np.arange(0.0, depth_mm[-1] + 1e-9, TABLE_STEP_MM)   # uniform for _lookup
    fraction = np.clip(np.interp(depth, depth_mm, dose_percent) / 100.0, 0.0, None)
    p = energy.points
    es = machine.spread.scattering_energy_mev * float(sigma_scale)
    power = scattering_power_per_mm(depth, energy.mean_energy_mev, p.rp_mm, es)
    sigma = fermi_eyges_sigma_mm(depth, energy.mean_energy_mev, p.rp_mm, es)
    sigma = np.minimum(sigma, np.interp(p.r50_mm, depth, sigma))
    cut = p.r50_mm + 2.0 * (p.rp_mm - p.r50_mm) + 5.0
    return ElectronModel(beam=beam, machine=machine, energy=energy,
                         applicator=Applicator(beam.applicator_diameter_mm, beam.bevel_deg),
                         depth_mm=depth, dose_fraction=fraction, sigma_mcs_mm=sigma,
                         scatter_power_per_mm=power,
                         cut_depth_mm=min(cut, float(depth[-1])),
                         fluence_radius=fluence_radius, fluence=fluence,
                         fluence_tilt=fluence_tilt, sigma0_mm=sigma0_mm,
                         halo_fraction=float(halo_fraction))


@dataclass(frozen=True)
class _Grid:
    """Beam-aligned grid: x = x0 + i h, y = x0 + j h, z = z0 + k h (applicator frame)."""

    h: float
    x0: float
    n_xy: int
    z0: float
    nz: int

    def applicator_from_voxel(self, z_step: float | None = None) -> np.ndarray:
        step = self.h if z_step is None else z_step
        out = np.diag([self.h, self.h, step, 1.0])
        out[:3, 3] = [self.x0, self.x0, self.z0]
        return out

    @property
    def x(self) -> np.ndarray:
        return self.x0 + self.h * np.arange(self.n_xy)

    @property
    def z(self) -> np.ndarray:
        return self.z0 + self.h * np.arange(self.nz)


@lru_cache(maxsize=1)
def _path_luts() -> np.ndarray:
    """(3, N) stopping, scattering and backscatter-amplitude tables sampled along pencils."""
    t = tissue_lookup()
    return np.ascontiguousarray(np.stack([t.rsp, t.scatter, t.ebf_a]))


def _make_grid(model: ElectronModel, h: float, bolus_mm: float, depth_factor: float,
               sigma_mcs_mm: float) -> _Grid:
    app = model.applicator
    r = app.radius_mm
    rise = r * app.slope
    s = model.spread
    z_far = model.cut_depth_mm
    sigma_far = math.sqrt(s.sigma0_mm ** 2 + (s.sigma_theta_rad * (z_far + 2 * rise)) ** 2
                          + sigma_mcs_mm ** 2)
    half = r + LATERAL_MARGIN_SIGMAS * sigma_far
    n_half = math.ceil(half / h)
    z_lo = -math.ceil(rise / h - 1e-9) * h
    z_hi = rise + bolus_mm + depth_factor * z_far
    nz = math.ceil((z_hi - z_lo) / h) + 1
    return _Grid(h=h, x0=-n_half * h, n_xy=2 * n_half + 1, z0=z_lo, nz=nz)


def _overlap(lo: np.ndarray, hi: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Length of [lo, hi] intersected with [a, b] (broadcasting)."""
    return np.clip(np.minimum(hi, b) - np.maximum(lo, a), 0.0, None)


@dataclass(frozen=True, eq=False)
class _Relative:
    """Relative dose (fraction of the broad-beam maximum) on the beam grid."""

    dose: np.ndarray        # (nz, n, n)
    grid: _Grid
    rsp: np.ndarray         # (nz, n, n) at the planes
    cax_backscatter: np.ndarray   # (nz,) backscatter factor of the central pencil (1: none)
    max_water_depth_mm: float     # deepest water-equivalent depth any pencil reached
    outside_ct_percent: float     # % of the pencils' path samples that lie outside the CT
    cax_medium: np.ndarray | None = None   # (nz,) dose-to-medium / dose-to-water on the axis


def _mid_points(pencils, grid) -> np.ndarray:
    """(i, j, k + 0.5) grid coordinates of every pencil's segment midpoints, (N, 3)."""
    mids = np.empty((grid.nz - 1, pencils.i.size, 3))
    mids[:, :, 0] = pencils.i[None, :]
    mids[:, :, 1] = pencils.j[None, :]
    mids[:, :, 2] = np.arange(grid.nz - 1)[:, None] + 0.5
    return mids.reshape(-1, 3)


#: Planes per part of the spreading shared with the helper thread.
SPREAD_PLANES_PER_PART = 6


@lru_cache(maxsize=8)
def _blur_matrix(n: int, sigma_cells: float, truncate: float = 3.0) -> np.ndarray:
    """(n, n) matrix of the 1-D Gaussian filter of ``sigma_cells`` on n cells, zero
    outside (the weights and cut of :func:`scipy.ndimage.gaussian_filter` with
    ``mode="constant"``): ``B @ plane @ B.T`` blurs a plane along both axes, as
    ``gaussian_filter(plane, sigma_cells, mode="constant", truncate=truncate)`` does up
    to rounding (one matrix product per axis: about half the time of the filter's loops).

    Examples
    --------
    >>> import numpy as np
    >>> from scipy.ndimage import gaussian_filter
    >>> plane = np.random.default_rng(0).random((20, 20))
    >>> b = _blur_matrix(20, 2.5)
    >>> ref = gaussian_filter(plane, 2.5, mode="constant", truncate=3.0)
    >>> bool(np.allclose(b @ plane @ b.T, ref, rtol=0.0, atol=1e-14))
    True
    """
    radius = int(truncate * float(sigma_cells) + 0.5)
    offsets = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 * (offsets / float(sigma_cells)) ** 2)
    weights /= weights.sum()
    rows = np.arange(n)[:, None]
    cols = rows.T
    matrix = np.zeros((n, n))
    near = np.abs(cols - rows) <= radius
    matrix[near] = weights[(cols - rows)[near] + radius]
    matrix.setflags(write=False)
    return matrix


def _spread(amp: np.ndarray, sigma: np.ndarray, pencils, h: float, n: int,
            halo_fraction: float, *, fast: bool, numba_backend: bool) -> np.ndarray:
    """The pencils spread laterally on the grid, plus the wall-scatter halo.

    Every plane is independent: parts of :data:`SPREAD_PLANES_PER_PART` planes are shared
    with the helper thread (:func:`models.base.beside.share_with_helper`) once it is free.
    """
    checkpoint("the pencil spreading")
    if fast:
        binned = (kernels.spread_pencils_binned if numba_backend
                  else kernels.spread_pencils_binned_numpy)

        def kernel(a, s):
            return binned(a, s, pencils.i, pencils.j, h, n, n, SIGMA_STEP)
    else:
        one_by_one = kernels.spread_pencils if numba_backend else kernels.spread_pencils_numpy

        def kernel(a, s):
            return one_by_one(a, s, pencils.i, pencils.j, h, n, n)
    dose = np.empty((amp.shape[0], n, n))

    def part(k: int) -> None:
        planes = slice(k * SPREAD_PLANES_PER_PART, (k + 1) * SPREAD_PLANES_PER_PART)
        dose[planes] = kernel(amp[planes], sigma[planes])
        if halo_fraction > 0.0:
            blur = _blur_matrix(n, HALO_SIGMA_MM / h)
            dose[planes] += halo_fraction * np.matmul(np.matmul(blur, dose[planes]), blur.T)

    share_with_helper(-(-amp.shape[0] // SPREAD_PLANES_PER_PART), part)
    return dose


def relative_dose(ct_hu: np.ndarray, ct_voxel_from_applicator: np.ndarray,
                  model: ElectronModel, *, grid_mm: float, bolus_mm: float = 0.0,
                  bolus_rsp: float = 1.0, disc: ShieldingDisc | None = None,
                  backend: str = "numba", fast: bool = True,
                  mask_air: bool = True, dose_to: str = "water") -> _Relative:
    """Pencil-beam dose, unnormalised, on the beam-aligned grid (see module docstring).

    ``ct_hu`` is the CT array (nk, nj, ni) in HU; ``ct_voxel_from_applicator`` the 4x4
    map from applicator mm to continuous CT index (i, j, k). ``fast`` spreads pencils of
    similar sigma together (:func:`models.dose.kernels.spread_pencils_binned`), otherwise
    one by one. ``mask_air=False`` keeps the (extrapolated) dose in air and inside the tube,
    for reading depth doses right at a water surface. ``dose_to="medium"`` converts the
    dose to water into dose to the local medium (times the mass collision stopping-power
    ratio medium/water of each voxel).
    """
    h = float(grid_mm)
    numba_backend = backend == "numba"
    sample_grid, sample_points = (
        (kernels.sample_luts, kernels.sample_luts_points) if numba_backend
        else (kernels.sample_luts_numpy, kernels.sample_luts_points_numpy))
    tissue = tissue_lookup()
    # stopping and scattering power at the nodes (and the dose-to-medium factor)
    grid_luts = np.stack([tissue.rsp, tissue.scatter]
                         + ([tissue.stopping_ratio] if dose_to == "medium" else []))
    path_luts = _path_luts()
    material = shield_material(disc.material) if disc is not None else None
    depth_factor = BASE_DEPTH_FACTOR
    sigma_water = float(model.sigma_mcs_mm.max())
    sigma_grid = sigma_water
    while True:
        grid = _make_grid(model, h, bolus_mm, depth_factor, sigma_grid)
        n = grid.n_xy
        ct_from_grid = ct_voxel_from_applicator @ grid.applicator_from_voxel()
        pencils = _pencils(model, grid)
        planes, n_nan, at_mids, n_out_mid, n_nan_mid = _sample_ct(
            sample_grid, sample_points, ct_hu, ct_from_grid, grid, pencils, grid_luts,
            path_luts)
        rsp_plane, scatter_plane = planes[0], planes[1]
        if n_nan or n_nan_mid:
            raise InputError(f"CT contains NaN values at {n_nan + n_nan_mid} points in the "
                             "beam region; fix or re-import the CT")
        rsp_mid, scatter_mid, ebf_mid = at_mids.reshape(3, grid.nz - 1, pencils.i.size)
        paths = _water_depths(rsp_plane, rsp_mid, scatter_mid, grid, pencils, model,
                              bolus_mm, bolus_rsp, disc, material,
                              numba_backend=numba_backend)
        zeff = paths.zeff
        # still in matter with dose above a few % at the grid's end: extend (low density)
        unfinished = (zeff[-1] < model.energy.points.rp_mm) & (
            rsp_plane[-1, pencils.j, pencils.i] > AIR_RSP)
        if np.any(unfinished) and depth_factor < MAX_DEPTH_FACTOR:
            depth_factor *= 2.0
            continue
        # low density widens the spread beyond water's: widen the grid once if needed
        mcs = fermi_eyges_along_path(grid.z, paths.seg_wet, paths.seg_mid, zeff,
                                     model.depth_mm, model.scatter_power_per_mm,
                                     model.energy.points.r50_mm,
                                     seg_scatter=paths.seg_scatter)
        sigma_path = min(float(mcs.max()), MAX_SIGMA_WIDENING * sigma_water)
        if sigma_path <= 1.2 * sigma_grid or sigma_grid > sigma_water:
            break
        sigma_grid = sigma_path
    keep = int(np.max(np.nonzero(zeff.min(axis=1) <= model.cut_depth_mm)[0], initial=0)) + 2
    keep = min(keep, grid.nz)
    redistribute = _redistribute_at_edges(rsp_plane, scatter_plane, scatter_mid, rsp_mid,
                                          pencils, zeff, model, h, keep,
                                          numba_backend=numba_backend)
    amp, sigma, boost = _amplitudes(model, grid, pencils, paths, material, mcs, disc,
                                    numba_backend=numba_backend)
    tissue_boost = tissue_backscatter(paths.zeff, ebf_mid, model)
    if tissue_boost is not None:
        amp, boost = amp * tissue_boost, boost * tissue_boost
    dose = _spread(amp, sigma, pencils, h, n, model.halo_fraction, fast=fast,
                   numba_backend=numba_backend)
    redistribute(dose)
    _mask(dose, rsp_plane if mask_air else None, grid, model.applicator, disc)
    medium = planes[2] if dose_to == "medium" else None
    if medium is not None:
        dose *= medium
    return _kept(dose, grid, keep, rsp_plane, boost, pencils, zeff, medium,
                 outside_ct_percent=100.0 * n_out_mid / max(rsp_mid.size, 1))


def _sample_ct(sample_grid, sample_points, ct_hu: np.ndarray, ct_from_grid: np.ndarray,
               grid: _Grid, pencils, grid_luts: np.ndarray, path_luts: np.ndarray
               ) -> tuple[np.ndarray, int, np.ndarray, int, int]:
    """The CT's tables at the grid's nodes and at the pencils' segment midpoints:
    ``(planes (L, nz, n, n), NaN count, at_mids (3, M), outside count, NaN count)``.

    The midpoints and the last third of the planes are sampled on the helper thread
    (:func:`models.base.beside.run_beside`) while this one samples the other planes.
    """
    n = grid.n_xy
    split = (2 * grid.nz) // 3
    mids = run_beside(sample_points, ct_hu, ct_from_grid, _mid_points(pencils, grid),
                      path_luts)
    deeper = np.eye(4)
    deeper[2, 3] = split               # grid index k -> k + split
    far = run_beside(sample_grid, ct_hu, ct_from_grid @ deeper, (grid.nz - split, n, n),
                     grid_luts)
    near, _n_out, n_nan = sample_grid(ct_hu, ct_from_grid, (split, n, n), grid_luts)
    far_planes, _n_out_far, n_nan_far = far.result()
    at_mids, n_out_mid, n_nan_mid = mids.result()
    return (np.concatenate([near, far_planes], axis=1), n_nan + n_nan_far, at_mids,
            n_out_mid, n_nan_mid)


def _kept(dose: np.ndarray, grid: _Grid, keep: int, rsp_plane: np.ndarray, boost: np.ndarray,
          pencils, zeff: np.ndarray, medium: np.ndarray | None, *,
          outside_ct_percent: float) -> _Relative:
    """The :class:`_Relative` of :func:`relative_dose` on its first ``keep`` planes."""
    n = grid.n_xy
    central = int(np.argmin(np.hypot(pencils.x, pencils.y)))
    axis = None if medium is None else medium[:keep, n // 2, n // 2]
    return _Relative(dose=dose[:keep], grid=replace(grid, nz=keep), rsp=rsp_plane[:keep],
                     cax_backscatter=boost[:keep, central],
                     max_water_depth_mm=float(zeff[-1].max()),
                     outside_ct_percent=outside_ct_percent,
                     cax_medium=None if axis is None else np.where(axis > 0, axis, 1.0))


def _redistribute_at_edges(rsp_plane: np.ndarray, scatter_plane: np.ndarray,
                           scatter_mid: np.ndarray, rsp_mid: np.ndarray, pencils,
                           zeff: np.ndarray, model: ElectronModel, h: float, keep: int, *,
                           numba_backend: bool) -> Callable[[np.ndarray], None]:
    """Starts the :func:`lateral_redistribution` of the pencils' window over the first
    ``keep`` planes, where some pencil crosses tissue that scatters more than it stops
    (``scatter_mid`` beyond ``rsp_mid``, (nz - 1, P)), on the helper thread
    (:func:`models.base.beside.run_beside`: it needs the CT, not the spread pencils);
    returns the function that multiplies the spread dose (nz, n, n) by it, in place (it
    waits for the helper; without such tissue it does nothing). ``zeff`` (nz, P) is the
    pencils' water depth (with the detour); ``rsp_plane`` and ``scatter_plane``
    (nz, n, n) the stopping and scattering power at the grid's nodes."""
    if not np.any(scatter_mid[:keep] > rsp_mid[:keep] + LATERAL_SCATTER_EXCESS):
        return lambda dose: None
    checkpoint("the lateral redistribution")
    n = rsp_plane.shape[1]
    lo = max(int(min(pencils.i.min(), pencils.j.min())) - REDEFINE_MARGIN_CELLS, 0)
    hi = min(int(max(pencils.i.max(), pencils.j.max())) + REDEFINE_MARGIN_CELLS + 1, n)
    box = (slice(0, keep), slice(lo, hi), slice(lo, hi))
    depth = np.full((keep, hi - lo, hi - lo), np.nan)
    depth[:, pencils.j - lo, pencils.i - lo] = zeff[:keep]
    factor = run_beside(lateral_redistribution, rsp_plane[box], scatter_plane[box], model, h,
                        water_depth=depth, numba_backend=numba_backend)

    def multiply(dose: np.ndarray) -> None:
        dose[box] *= factor.result()

    return multiply


@dataclass(frozen=True, eq=False)
class _Pencils:
    i: np.ndarray        # (P,) column index
    j: np.ndarray        # (P,) row index
    x: np.ndarray        # (P,) mm
    y: np.ndarray        # (P,) mm
    z0: np.ndarray       # (P,) face depth mm
    weight: np.ndarray   # (P,) open fraction


@lru_cache(maxsize=32)
def _pencil_layout(diameter_mm: float, bevel_deg: float, h: float, x0: float,
                   n: int) -> _Pencils:
    app = Applicator(diameter_mm, bevel_deg)
    coords = x0 + h * np.arange(n)
    xx, yy = np.meshgrid(coords, coords, indexing="xy")
    near = np.hypot(xx, yy) <= app.radius_mm + h
    weight = np.zeros_like(xx)
    weight[near] = app.aperture_weights(h, xx[near], yy[near])
    j, i = np.nonzero(weight > 0.0)
    x = coords[i]
    y = coords[j]
    return _Pencils(i=i.astype(np.int64), j=j.astype(np.int64), x=x, y=y,
                    z0=app.face_z_mm(x, y), weight=weight[j, i])


def _pencils(model: ElectronModel, grid: _Grid) -> _Pencils:
    app = model.applicator
    return _pencil_layout(float(app.diameter_mm), float(app.bevel_deg), grid.h, grid.x0,
                          grid.n_xy)


@dataclass(frozen=True, eq=False)
class _Paths:
    """Water-equivalent path of every pencil (P) through every plane (nz)."""

    zeff: np.ndarray              # (nz, P) water depth at each plane, mm
    entry: np.ndarray             # (P,) geometric depth where the pencil enters matter
    seg_wet: np.ndarray           # (nz - 1, P) water-equivalent thickness of each segment
    seg_scatter: np.ndarray       # (nz - 1, P) scattering thickness (mm of water's power)
    seg_mid: np.ndarray           # (nz - 1, P) geometric middle of the traversed part, mm
    zeff_disc: np.ndarray | None  # (P,) water depth at the disc's upstream face
    in_disc: np.ndarray | None    # (P,) pencil hits the disc
    detour: np.ndarray | None = None   # (nz, P) detour factor at the planes (None: all 1)
    straggling: np.ndarray | None = None   # (nz, P) extra range spread, mm (None: water)


def _water_depths(rsp_plane: np.ndarray, rsp_mid: np.ndarray, scatter_mid: np.ndarray,
                  grid: _Grid, pen: _Pencils, model: ElectronModel, bolus_mm: float,
                  bolus_rsp: float, disc: ShieldingDisc | None,
                  material: ShieldMaterial | None, *, numba_backend: bool = True) -> _Paths:
    """Water-equivalent depth of every pencil at every plane, entry depth, disc data.

    ``rsp_mid`` / ``scatter_mid`` (nz - 1, P): relative stopping and scattering power at
    the segment middles. Where a segment scatters more than water of the same stopping
    (bone, metal), the electrons' mean direction cosine falls faster than in water and
    they penetrate less per path length: the segment's water-equivalent thickness is
    multiplied by the ratio of the mean direction cosines of water and of the path at the
    same water depth (:func:`detour_factor`). In water the factor is exactly 1. (The
    factor is not applied to the dose per depth: measured against the Monte Carlo slabs
    that made R90 and the bone-edge shadow worse; ``detour`` is kept on the paths.)
    """
    checkpoint("the water depths")
    h = grid.h
    z = grid.z
    lo = z[:-1, None]
    hi = lo + h
    z0 = pen.z0[None, :]
    r_mid = rsp_mid.astype(np.float64)
    s_mid = scatter_mid.astype(np.float64)
    r_next = rsp_plane[1:, pen.j, pen.i].astype(np.float64)
    first = z0 > lo + 0.5 * h                              # partial first segment
    r_seg = np.where(first, r_next, r_mid)
    s_seg = np.where(first, r_next, s_mid)
    length = _overlap(lo, hi, z0, np.inf)
    mid = 0.5 * (np.maximum(lo, z0) + hi)
    bolus = _overlap(lo, hi, z0, z0 + bolus_mm) if bolus_mm > 0 else 0.0
    seg = r_seg * (length - bolus) + bolus_rsp * bolus
    seg_s = s_seg * (length - bolus) + bolus_rsp * bolus
    in_disc = None
    metal = 0.0
    if disc is not None and material is not None:
        in_disc = np.hypot(pen.x - disc.centre_x_mm, pen.y - disc.centre_y_mm) \
            <= 0.5 * disc.diameter_mm
        d0 = np.maximum(disc.depth_mm, pen.z0 + bolus_mm)[None, :]
        d1 = np.full_like(d0, disc.depth_mm + disc.thickness_mm)
        metal = _overlap(lo, hi, d0, d1) * in_disc[None, :]
        seg = seg - r_seg * metal + material.water_equivalent_per_mm * metal
        seg_s = seg_s - s_seg * metal + material.scatter_per_mm * metal
    factor = detour_factor(seg, seg_s, model)
    straggling = detour_straggling_mm(seg, seg_s, model, numba_backend=numba_backend)
    seg = seg * factor
    zeff = np.vstack([np.zeros((1, pen.z0.size)), cumsum_planes(seg)])
    detour = None
    if not np.all(factor == 1.0):                 # at the planes: the segment before each
        detour = np.vstack([np.ones((1, pen.z0.size)), factor])
    if in_disc is None:
        return _Paths(zeff, _entry(zeff, z, pen.z0), seg, seg_s, mid, None, None, detour,
                      straggling)
    # water depth where each pencil meets the disc (linear between planes), metal left out
    free = np.vstack([np.zeros((1, pen.z0.size)),
                      cumsum_planes(seg * (1.0 - np.minimum(metal / h, 1.0)))])
    pos = np.clip((d0[0] - z[0]) / h, 0.0, z.size - 1.0)
    k_lo = np.minimum(pos.astype(np.int64), z.size - 2)
    frac = pos - k_lo
    cols = np.arange(pen.z0.size)
    zeff_at_disc = free[k_lo, cols] * (1.0 - frac) + free[k_lo + 1, cols] * frac
    return _Paths(zeff, _entry(zeff, z, pen.z0), seg, seg_s, mid, zeff_at_disc, in_disc,
                  detour, straggling)


#: Mean direction cosine of a fully diffused broad electron beam (forward hemisphere
#: isotropic): more scattering does not reduce penetration below it.
DIFFUSED_MEAN_COSINE = 0.5


def mean_cosine(variance: np.ndarray) -> np.ndarray:
    """Mean direction cosine after an accumulated one-plane angular variance (rad^2).

    ``c + (1 - c) exp(-A / (1 - c))``, ``c`` = :data:`DIFFUSED_MEAN_COSINE`: ``1 - A`` for
    small ``A`` (Lewis 1950, ``<cos> = exp(-A)``), and the diffusion limit ``c`` once the
    electrons have lost their direction.
    """
    c = DIFFUSED_MEAN_COSINE
    return c + (1.0 - c) * np.exp(-np.asarray(variance) / (1.0 - c))


#: Scattering constant Es (MeV) of the electrons' angular transport (detour, range spread,
#: redistribution): the physical ``Es = 21.2 MeV`` (Rossi & Greisen; ICRU 35), since the
#: angular variance saturates at the diffusion limit there, unlike the pencils' Fermi-Eyges
#: sigma, whose effective Es is fitted to the measured spread
#: (``LateralSpread.scattering_energy_mev``).
REDEFINE_SCATTERING_ENERGY_MEV = 21.2


def angular_power_per_mm(zeff_mm: np.ndarray, model: ElectronModel) -> np.ndarray:
    """Water's one-plane angular scattering power (rad^2 per mm) at water depth ``zeff_mm``
    with the physical ``Es`` (:data:`REDEFINE_SCATTERING_ENERGY_MEV`), for the electrons'
    directions (detour, range spread, redistribution); the pencils' Fermi-Eyges sigma uses
    the machine's effective ``Es`` instead. Held at its value at Rp beyond it."""
    e = model.energy
    return scattering_power_per_mm(np.minimum(zeff_mm, e.points.rp_mm), e.mean_energy_mev,
                                   e.points.rp_mm, REDEFINE_SCATTERING_ENERGY_MEV)


def _angular_steps(seg_wet: np.ndarray, seg_scatter: np.ndarray, model: ElectronModel
                   ) -> tuple[np.ndarray, np.ndarray] | None:
    """One-plane angular variance (rad^2) water gathers over each segment and what the
    segment gathers beyond it (both (nz - 1, P)); None where nothing scatters more or less
    than it stops."""
    extra = seg_scatter - seg_wet
    if not np.any(np.abs(extra) > 1e-9):
        return None
    power = angular_power_per_mm(cumsum_planes(seg_wet) - 0.5 * seg_wet, model)
    own = power * seg_wet
    step = power * extra
    return own, step


def detour_factor(seg_wet: np.ndarray, seg_scatter: np.ndarray, model: ElectronModel
                  ) -> np.ndarray:
    """Factor (nz - 1, P) on each segment's water-equivalent thickness for extra scattering.

    Range spent per unit depth is ``1 / <cos>``; water's own share is in the depth dose,
    so a segment counts ``<cos>_w(A_w) / <cos>(A_w + dA)`` times its stopping thickness
    (:func:`mean_cosine`), ``A_w`` water's accumulated angular variance at the segment's
    water depth and ``dA = sum T_w(zeff) (scatter - wet)`` the variance gathered beyond it
    (``T_w`` water's scattering power at Harder's energy with the physical Es,
    :func:`angular_power_per_mm`).
    Exactly 1 wherever scatter = stopping (water); it fades once water's electrons are
    diffused too (end of range).
    """
    steps = _angular_steps(seg_wet, seg_scatter, model)
    if steps is None:
        return np.ones_like(seg_wet)
    own, step = steps
    a_water = cumsum_planes(own) - 0.5 * own
    a_extra = cumsum_planes(step) - 0.5 * step
    return mean_cosine(a_water) / mean_cosine(np.maximum(a_water + a_extra, 0.0))


def detour_straggling_mm(seg_wet: np.ndarray, seg_scatter: np.ndarray,
                         model: ElectronModel, *,
                         numba_backend: bool = True) -> np.ndarray | None:
    """Spread (nz, P; mm of water) of the depth the electrons reach beyond water's own, at
    the planes; None in water (no extra spread).

    The detour (:func:`detour_factor`) is the mean loss of penetration per path; its
    fluctuation is Lewis's (1950) variance of the depth reached after a fixed path
    (:func:`models.dose.kernels.penetration_variance`, with ``k1 ds`` the one-plane angular
    variance gathered, the physical scattering power). Water's share is in the depth dose,
    so the extra spread is ``sqrt(Var_z(tissue) - Var_z(water))`` along the pencil's path (in mm of
    water): electrons made oblique by bone spread their residual ranges, and the depth
    dose behind it falls less steeply. None wherever scatter = stopping everywhere.
    """
    steps = _angular_steps(seg_wet, seg_scatter, model)
    if steps is None:
        return None
    own, step = steps
    variance = (kernels.penetration_variance if numba_backend
                else kernels.penetration_variance_numpy)
    var_t = variance(own + step, seg_wet)
    var_w = variance(own, seg_wet)
    var = np.maximum(var_t - var_w, 0.0)
    return np.vstack([np.zeros((1, seg_wet.shape[1])), np.sqrt(var)])


#: Scattering power above stopping power (relative to water, per mm) along some pencil
#: from which the lateral redistribution (:func:`lateral_redistribution`) is computed.
LATERAL_SCATTER_EXCESS = 0.05

#: Share of a tissue's scattering beyond water's that drives the redistribution. Empirical,
#: fitted to the ompmc bone edge at 12 MeV (tests/data/mc/heterogeneity_edge_*; MC hot /
#: cold spot +6.2 / -14.3 % at 24-26 mm, -0.2 / -33.2 % at 30-32 mm): the least squares of
#: the four spots' gaps in units of each profile's MC sigma (1.04 / 1.48 %), with the MC's
#: water curve, the range spread, the excess ranging out (:func:`_range_out_excess`) and the
#: pencils' tails ranging out (:func:`tails_ranging_out`). 0.15 gives +6.1 / -13.5 % and
#: +2.3 / -34.2 %; 0.2: +6.7 / -14.0 and +2.6 / -34.4 %; 0.1: +5.4 / -13.0 and +1.9 /
#: -34.0 %; 0.05 (smallest largest gap, 1.9): +4.8 / -12.5 and +1.6 / -33.8 %; 0 (the
#: pencils alone): +4.1 / -12.0 and +1.4 / -33.6 %. (First fitted with the LIAC depth
#: dose: full excess, 1: +11.9 / -20.2 % at 24-26 mm; 0.4: +6.0 % there but +5.7 % at
#: 30-32 mm.)
REDEFINE_EXCESS_WEIGHT = 0.15

#: Grid columns beyond the outermost pencils on which the redistribution is computed.
REDEFINE_MARGIN_CELLS = 4


def lateral_redistribution(rsp_plane: np.ndarray, scatter_plane: np.ndarray,
                           model: ElectronModel, h: float, *,
                           water_depth: np.ndarray | None = None,
                           numba_backend: bool = True) -> np.ndarray:
    """Fluence factor (nz, n, n) of the electrons scattered across lateral edges of tissue
    that scatters more than water (bone).

    The central-axis approximation gives every pencil the scattering of its own axis and
    spreads it with its whole Fermi-Eyges sigma from the surface, so at a bone edge the
    broad beam's redistribution (more electrons scattered out of the bone than into it:
    a hot spot beside the edge, a cold one under it) is blurred away. Here a laterally
    unbounded uniform field is redefined plane by plane on the grid's columns
    (:func:`models.dose.kernels.redefine_fluence`, Shiu & Hogstrom 1991): each column
    scatters ``T_w(zeff) h (1 + k max(scatter - 1, 0))`` (water's power at the column's
    own water depth, with the physical Es, and ``k`` = :data:`REDEFINE_EXCESS_WEIGHT` of
    the medium's relative linear scattering power beyond water's; lung, air gaps and the
    tube scatter as water here and are left to the pencils), and the dose is multiplied by
    the resulting fluence, its excess over 1 ranging out with the water depth of the
    columns it was scattered from (:func:`_range_out_excess`; ``water_depth`` (nz, n, n):
    the pencils' own, NaN where the rsp's sum stands in). A column is transported until
    its water depth passes the model's cut depth (no dose beyond to redistribute). In a
    laterally uniform medium the factor is exactly 1; it is only computed when some
    pencil crosses tissue scattering more than it stops (:data:`LATERAL_SCATTER_EXCESS`),
    so water costs nothing. The shielding disc is not part of it (its metal is not in the CT).
    """
    r_seg = 0.5 * (rsp_plane[1:] + rsp_plane[:-1]).astype(np.float64)
    s_seg = 0.5 * (scatter_plane[1:] + scatter_plane[:-1]).astype(np.float64)
    zeff_mid = cumsum_planes(r_seg) * h - 0.5 * r_seg * h
    power = angular_power_per_mm(zeff_mid, model)
    d_var = np.ascontiguousarray(power * h * (1.0 + REDEFINE_EXCESS_WEIGHT
                                                * np.maximum(s_seg - 1.0, 0.0)))
    var_max = 1.0 - DIFFUSED_MEAN_COSINE
    # the planes above the first lateral difference keep F = 1: start the transport there
    varies = np.nonzero(np.ptp(d_var.reshape(d_var.shape[0], -1), axis=1) > 1e-12)[0]
    start = int(varies[0]) if varies.size else d_var.shape[0]
    var0 = model.spread.sigma_theta_rad ** 2
    for k in range(start):                      # the uniform columns' angular variance
        var0 += float(d_var[k].flat[0]) * max(1.0 - var0 / var_max, 0.0)
    out = np.ones((d_var.shape[0] + 1, *d_var.shape[1:]))
    if start < d_var.shape[0]:
        redefine = (kernels.redefine_fluence if numba_backend
                    else kernels.redefine_fluence_numpy)
        # a column beyond the model's cut depth has no dose left: its transport ends there
        live_steps = np.sum(zeff_mid[start:] < model.cut_depth_mm, axis=0).astype(np.int64)
        out[start:] = redefine(np.ascontiguousarray(d_var[start:]), h, var0, var_max,
                               live_steps)
        plain = np.concatenate([np.zeros((1, *r_seg.shape[1:])),
                                cumsum_planes(r_seg * h)])
        depth = plain if water_depth is None else np.where(np.isnan(water_depth), plain,
                                                           water_depth)
        checkpoint("the range-out of the redistributed excess")
        out = _range_out_excess(out, depth, s_seg, model, h, numba_backend=numba_backend)
    return out


def _range_out_excess(fluence: np.ndarray, depth: np.ndarray, s_seg: np.ndarray,
                      model: ElectronModel, h: float, *,
                      numba_backend: bool = True) -> np.ndarray:
    """The redistributed fluence (nz, n, n) with the excess ``F - 1 > 0`` in units of the
    local electrons' dose: ``1 + (F - 1) g(z_src) / g(z)``.

    The electrons beside a bone edge in excess of the uniform field were scattered out of
    the tissue that scatters more (the deficit ``F < 1`` is of the local electrons); they
    crossed it and range out with its water depth, not with that of the column they land
    in (Shiu & Hogstrom 1991 carry each redefined pencil's own energy). One mean direction
    per column shares their outward angle with the column's own electrons, so their water
    depth is not carried by the transport: ``z_src`` is the mean water depth ``depth``
    (nz, n, n; the pencils' own, with the detour) of the columns around, weighted by the
    scattering beyond water's each has gathered (``s_seg`` (nz - 1, n, n), relative to
    water per mm), over a box of the variance of water's Fermi-Eyges spread at the plane's
    depth (where the excess electrons come from); ``g`` is the broad-beam depth dose. No
    fitted constant; in a laterally uniform medium ``F = 1`` and nothing changes.
    """
    hot_planes = np.nonzero((fluence > 1.0).any(axis=(1, 2)))[0]
    if not hot_planes.size:
        return fluence
    zero = np.zeros((1, *s_seg.shape[1:]))
    excess = np.concatenate([zero, cumsum_planes(np.maximum(s_seg - 1.0, 0.0))])
    # a box of the same variance as water's Fermi-Eyges spread at the plane's depth
    box = np.zeros(fluence.shape[0], dtype=np.int64)   # 0: a plane with no excess
    sigma = np.interp(np.median(depth[hot_planes].reshape(hot_planes.size, -1), axis=1),
                      model.depth_mm, model.sigma_mcs_mm)
    box[hot_planes] = 2 * np.round(math.sqrt(3.0) * sigma / h).astype(np.int64) + 1
    ranged = kernels.range_out_excess if numba_backend else kernels.range_out_excess_numpy
    return ranged(fluence, depth, excess, box, float(model.depth_mm[1] - model.depth_mm[0]),
                  np.ascontiguousarray(model.dose_fraction, dtype=np.float64))


def _entry(zeff: np.ndarray, z: np.ndarray, z0: np.ndarray) -> np.ndarray:
    """Geometric depth (mm) where each pencil enters matter (inf if never)."""
    reached = zeff >= ENTRY_WET_MM
    any_reached = reached.any(axis=0)
    k = np.argmax(reached, axis=0)
    cols = np.arange(zeff.shape[1])
    k_prev = np.maximum(k - 1, 0)
    z_a = z[k_prev]
    w_a = zeff[k_prev, cols]
    w_b = zeff[k, cols]
    frac = np.where(w_b > w_a, (ENTRY_WET_MM - w_a) / np.maximum(w_b - w_a, 1e-12), 0.0)
    z_hit = z_a + frac * (z[k] - z_a) - ENTRY_WET_MM
    return np.where(any_reached, np.maximum(z_hit, z0), np.inf)


def tissue_backscatter(zeff: np.ndarray, ebf_mid: np.ndarray, model: ElectronModel
                       ) -> np.ndarray | None:
    """Backscatter factor (nz, P) upstream of interfaces into higher-Z tissue (bone).

    Where a pencil's backscatter amplitude ``a`` (``ebf_a`` of the tissue at the segment
    middles, ``ebf_mid`` (nz - 1, P)) rises from one segment to the next, the planes
    upstream get ``(a_down - a_up) exp(-b E_d) exp(-(zeff_i - zeff) / lambda)`` more dose
    (``E_d = E0 (1 - zeff_i / Rp)`` Harder's energy at the interface, ``b`` and ``lambda``
    from ``materials.json``, empirical). None when no pencil crosses such an interface.
    """
    a = ebf_mid.astype(np.float64)
    rise = np.zeros((a.shape[0] + 1, a.shape[1]))
    rise[1:-1] = np.maximum(a[1:] - a[:-1], 0.0)         # at plane k between segments
    if not np.any(rise > 1e-4):
        return None
    b_per_mev, relax_mm = backscatter_constants()
    e = model.energy
    energy = np.maximum(e.mean_energy_mev * (1.0 - zeff / e.points.rp_mm), 0.0)
    source = rise * np.exp(-b_per_mev * energy)
    # boost[k] = sum over i > k of source[i] exp(-(zeff[i] - zeff[k]) / lambda), as a
    # reverse cumulative sum (zeff never decreases along a pencil)
    depth = zeff / relax_mm
    weighted = source * np.exp(-(depth - depth[:1]))
    after = cumsum_planes(weighted[::-1])[::-1] - weighted
    return 1.0 + after * np.exp(depth - depth[:1])


#: Gauss-Hermite order of the depth dose averaged over the extra range spread.
STRAGGLING_NODES = 9

#: Extra range spread (mm) below which a pencil keeps its plain depth dose.
STRAGGLING_MIN_MM = 0.05


def straggled_depth_dose(zeff: np.ndarray, straggling_mm: np.ndarray | None,
                         model: ElectronModel) -> np.ndarray:
    """Central dose fraction at water depth ``zeff`` (nz, P) averaged over a Gaussian spread
    of the range spent (:func:`detour_straggling_mm`; None or 0: the plain depth dose)."""
    g = lookup_uniform(zeff, model.depth_mm, model.dose_fraction)
    if straggling_mm is None:
        return g
    spread = straggling_mm > STRAGGLING_MIN_MM
    if not np.any(spread):
        return g
    x, w = np.polynomial.hermite.hermgauss(STRAGGLING_NODES)
    z_s, s_s = zeff[spread], straggling_mm[spread]
    acc = np.zeros_like(z_s)
    for xi, wi in zip(x, w, strict=True):
        acc += wi * lookup_uniform(np.maximum(z_s + math.sqrt(2.0) * xi * s_s, 0.0),
                                   model.depth_mm, model.dose_fraction)
    g = g.copy()
    g[spread] = acc / math.sqrt(math.pi)
    return g


def _amplitudes(model: ElectronModel, grid: _Grid, pen: _Pencils, paths: _Paths,
                material: ShieldMaterial | None, mcs: np.ndarray,
                disc: ShieldingDisc | None = None, *, numba_backend: bool = True
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Central dose, lateral sigma and backscatter factor of every pencil in every plane.

    ``mcs`` is the multiple-scattering sigma (:func:`fermi_eyges_along_path`), narrowed by
    :func:`tails_ranging_out`. All three results have shape (nz, P).
    """
    checkpoint("the pencil amplitudes")
    zeff, s_entry = paths.zeff, paths.entry
    zeff_disc, in_disc = paths.zeff_disc, paths.in_disc
    z = grid.z[:, None]
    vsd = model.machine.virtual_source_distance_mm
    g = straggled_depth_dose(zeff, paths.straggling, model)
    s = np.where(np.isfinite(s_entry), s_entry, 0.0)[None, :]
    isq = ((vsd + np.maximum(z, s) - s) / (vsd + np.maximum(z, s))) ** 2
    weight = pen.weight
    if model.fluence is not None and model.fluence_radius is not None:
        radius = model.applicator.radius_mm
        r = np.hypot(pen.x, pen.y) / radius
        fluence = np.interp(r, model.fluence_radius, model.fluence)
        if model.fluence_tilt is not None:
            fluence = fluence + np.interp(r, model.fluence_radius,
                                          model.fluence_tilt) * pen.y / radius
        weight = weight * np.maximum(fluence, 0.0)
    amp = weight[None, :] * g * isq
    if (zeff_disc is not None and material is not None and in_disc is not None
            and disc is not None):
        e_disc = np.maximum(model.energy.mean_energy_mev
                            * (1.0 - zeff_disc / model.energy.points.rp_mm), 0.0)
        ebf = material.backscatter_factor(e_disc)
        upstream = (zeff <= zeff_disc[None, :]) & in_disc[None, :]
        boost = (ebf[None, :] - 1.0) * np.exp(-(zeff_disc[None, :] - zeff)
                                              / material.backscatter_relaxation_mm)
        factor = np.where(upstream, 1.0 + boost, 1.0)
        amp *= factor
        # the electrons' share of the dose below comes through diffused; the
        # bremsstrahlung tail of the depth dose does not
        below = (z >= disc.depth_mm + disc.thickness_mm) & in_disc[None, :]
        eta = disc_transmission(material, disc.thickness_mm, zeff_disc, model)[None, :]
        tail = np.minimum(g, model.energy.points.bremsstrahlung_percent / 100.0)
        share = np.where(g > 0.0, (eta * (g - tail) + tail) / np.maximum(g, 1e-12), 1.0)
        amp *= np.where(below, share, 1.0)
    else:
        factor = np.ones_like(amp)
    sp = model.spread
    air_path = np.maximum(z - pen.z0[None, :], 0.0)
    sigma = np.sqrt(sp.sigma0_mm ** 2 + (sp.sigma_theta_rad * air_path) ** 2 + mcs ** 2)
    sigma = tails_ranging_out(sigma, g, grid.z, paths, model, numba_backend=numba_backend)
    return (np.ascontiguousarray(amp), np.ascontiguousarray(np.maximum(sigma, 0.05 * grid.h)),
            factor)


def tails_ranging_out(sigma_mm: np.ndarray, g: np.ndarray, z_mm: np.ndarray, paths: _Paths,
                      model: ElectronModel, *, numba_backend: bool = True) -> np.ndarray:
    """The pencils' lateral sigma (nz, P) with the tails' longer paths ranging out.

    The pencil beam gives a pencil's whole Gaussian the depth dose of its axis, but the
    electrons found far off the axis were scattered most and travelled longer than the
    mean. With Gaussian angles and positions (Fermi-Eyges) the direction at depth ``u``
    given the lateral position ``x`` at plane ``z`` has the mean ``c(u) x / sigma^2``,
    ``c(u) = sum_{u_m < u} t_m (z - u_m)`` the covariance of direction and position
    (``t_m`` the angular variance gathered over segment m, ``u_m`` its middle), so their
    path excess ``int theta^2 / 2 du`` in one plane is its mean plus ``K (x^2 / sigma^2 -
    1)``, ``K = int c(u)^2 du / (2 sigma^2)`` (``du`` in mm of water: the path costs range
    by the stopping). Water's own share of the spread is in the beam data (the measured
    depth dose and profiles), so only the tissue's share counts: ``K`` of the tissue's
    scattering (``seg_scatter``) minus ``K`` of scattering proportional to stopping
    (``seg_wet``) along the same path, with the pencils' own scattering power (the
    effective Es of the sigma it conditions on); small-angle, clipped at 0. With ``g(z +
    d) ~ g(z) exp(d g'/g)`` the profile ``N(x; sigma) g(z + K (u^2 - 1))`` is again a
    Gaussian, of variance ``sigma^2 / (1 - 2 kappa)``, ``kappa = K g'/g``, ``g`` the
    pencils' central dose (nz, P; with the range spread) and ``g'`` its change with the
    water depth along the pencil; renormalised (the pencil's lateral integral, and with it
    a broad beam in a uniform medium, does not change). Where the depth dose falls the
    pencil narrows; where it rises (build-up) nothing is added (``kappa <= 0``; a fraction
    of a % of sigma there). Held beyond R50 of water depth, as the spread. No fitted
    constant; exactly ``sigma_mm`` wherever no tissue scatters more than it stops
    (:func:`models.dose.kernels.narrow_tails`, numpy twin).
    """
    if not np.any(paths.seg_scatter > paths.seg_wet + 1e-9):
        return sigma_mm
    narrow = kernels.narrow_tails if numba_backend else kernels.narrow_tails_numpy
    return narrow(np.ascontiguousarray(sigma_mm), np.ascontiguousarray(g), paths.zeff,
                  paths.seg_wet, paths.seg_scatter, paths.seg_mid, z_mm,
                  float(model.depth_mm[1] - model.depth_mm[0]), model.scatter_power_per_mm,
                  model.energy.points.r50_mm)


def disc_transmission(material: ShieldMaterial, thickness_mm: float,
                      zeff_disc: np.ndarray, model: ElectronModel) -> np.ndarray:
    """Share (P,) of the electrons that come out of a disc: diffusion through a strong
    scatterer.

    The water-equivalent slab shifts the range of the straightest electrons (the end of
    range behind the disc is right), but in the metal most electrons lose their direction
    and stop or turn back inside it. Diffusion theory of a slab of thickness ``t`` without
    absorption transmits ``1 / (1 + 3 t / (4 lambda_tr))`` (extrapolation length
    ``2/3 lambda_tr`` on each face), with the transport mean free path ``lambda_tr = 2 /
    T_metal`` from the metal's linear angular scattering power (``scatter_per_mm`` times
    water's at Harder's energy where the pencil meets the disc, with the physical
    ``Es = 21.2 MeV``). No constant is fitted: 3 mm of steel at 6.5 MeV gives 0.63.
    """
    e = model.energy
    power = scattering_power_per_mm(np.minimum(zeff_disc, e.points.rp_mm), e.mean_energy_mev,
                                    e.points.rp_mm, REDEFINE_SCATTERING_ENERGY_MEV)
    transport_mm = 2.0 / (material.scatter_per_mm * power)
    return 1.0 / (1.0 + 0.75 * float(thickness_mm) / transport_mm)


def _mask(dose: np.ndarray, rsp_plane: np.ndarray | None, grid: _Grid, app: Applicator,
          disc: ShieldingDisc | None) -> None:
    """Zero the dose inside the disc, and (unless ``rsp_plane`` is None) in air and inside
    the applicator tube (in place)."""
    x = grid.x
    xx, yy = np.meshgrid(x, x, indexing="xy")
    z = grid.z[:, None, None]
    if rsp_plane is not None:
        dose[rsp_plane < AIR_RSP] = 0.0
        tube = app.inside_aperture(xx, yy)[None] & (z < app.face_z_mm(xx, yy)[None] - 1e-9)
        dose[tube] = 0.0
    if disc is not None:
        in_disc = (np.hypot(xx - disc.centre_x_mm, yy - disc.centre_y_mm)
                   <= 0.5 * disc.diameter_mm)[None]
        in_metal = (z > disc.depth_mm) & (z < disc.depth_mm + disc.thickness_mm)
        dose[in_disc & in_metal] = 0.0


def _check_choices(ct: Volume, backend: str, dose_to: str, model: str) -> None:
    if not isinstance(ct, Volume):
        raise TypeError(f"ct must be a Volume, got {type(ct).__name__}")
    if backend not in BACKENDS:
        raise InputError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    if dose_to not in DOSE_TO:
        raise InputError(f"unknown dose_to {dose_to!r}; choose one of: {', '.join(DOSE_TO)}")
    if model not in MODELS:
        raise InputError(f"unknown model {model!r}; choose one of: {', '.join(MODELS)}")


def _central_axis_max(rel: _Relative) -> float:
    """The 100 % level: central-axis maximum of dose to water without a disc's
    backscatter (the hot spot shows > 100 %); refuses a beam that meets no tissue."""
    centre = rel.grid.n_xy // 2
    cax = rel.dose[:, centre, centre] / rel.cax_backscatter
    if rel.cax_medium is not None:
        cax = cax / rel.cax_medium
    cax_max = float(cax.max())
    if not cax_max > 0.0 or rel.max_water_depth_mm < MIN_TISSUE_DEPTH_MM:
        raise InputError("no dose on the central axis: the applicator does not face tissue "
                         "in the CT (check the pose: +z of the applicator must point into "
                         "the patient)")
    if rel.outside_ct_percent > OUTSIDE_CT_WARN_PERCENT:
        log.warning("%.0f %% of the beam path lies outside the CT (no dose there): the CT "
                    "does not cover the irradiated region", rel.outside_ct_percent)
    return cax_max


def _check_pose(ct: Volume, patient_from_applicator: np.ndarray) -> np.ndarray:
    pose = as_transform(patient_from_applicator, name="patient_from_applicator", rigid=True)
    origin = pose[:3, 3]
    if not bool(ct.contains(origin)[0]):
        lo, hi = ct.bounds_mm()
        raise InputError(
            f"applicator end-face centre {np.round(origin, 1).tolist()} mm (LPS) is outside "
            f"the CT (x {lo[0]:.0f}..{hi[0]:.0f}, y {lo[1]:.0f}..{hi[1]:.0f}, "
            f"z {lo[2]:.0f}..{hi[2]:.0f} mm); check the pose or the registration")
    return pose


def _check_options(prescription_gy: float, grid_mm: float, isodose_percent: float,
                   bolus_mm: float, bolus_rsp: float, disc: ShieldingDisc | None
                   ) -> tuple[float, float, float, float, float]:
    """Validated prescription (Gy), grid (mm), isodose (%), bolus (mm) and bolus RSP."""
    rx = as_positive(prescription_gy, name="prescription_gy")
    h = as_positive(grid_mm, name="grid_mm")
    iso = as_positive(isodose_percent, name="isodose_percent")
    if iso >= 100.0:
        raise InputError(f"isodose_percent must be below 100, got {isodose_percent!r}")
    bolus = as_positive(bolus_mm, name="bolus_mm", allow_zero=True)
    bolus_r = as_positive(bolus_rsp, name="bolus_rsp")
    if disc is not None:
        shield_material(disc.material)
        for name in ("diameter_mm", "thickness_mm", "depth_mm"):
            as_positive(getattr(disc, name), name=f"disc.{name}")
    return rx, h, iso, bolus, bolus_r


def monitor_units(machine: MachineData, beam: ElectronBeam, dmax_gy: float
                   ) -> tuple[float, float, bool]:
    """Output factor, MU for ``dmax_gy`` at the 100 % level, and whether the factor is an
    estimate (then the MU must not be used to treat; warned once per beam)."""
    factor = machine.output_factor(beam)
    if factor is None:
        raise InputError(f"{machine.source}: no output factor for {beam.energy_mev:g} MeV, "
                         f"{beam.applicator_diameter_mm:g} mm, bevel {beam.bevel_deg:g} deg in "
                         "'output_factors.table': add the measured value")
    mu = dmax_gy * 100.0 / (machine.reference_output_cgy_per_mu * factor)
    mu_estimated = machine.output_factor_is_estimated(beam)
    if mu_estimated and beam not in _WARNED_ESTIMATED:
        _WARNED_ESTIMATED.add(beam)
        log.warning("output factor %.4f for %s is estimated, not measured: MU %.1f must not be "
                    "used to treat", factor, beam, mu)
    return factor, mu, mu_estimated


def compute_electron_dose(ct: Volume, patient_from_applicator: np.ndarray,
                          beam: ElectronBeam, *, prescription_gy: float = 10.0,
                          grid_mm: float = 2.0, isodose_percent: float = 90.0,
                          bolus_mm: float = 0.0, bolus_rsp: float = 1.0,
                          disc: ShieldingDisc | None = None,
                          library: BeamLibrary | None = None,
                          backend: str = "numba", fast: bool = True,
                          dose_to: str = "water", model: str = "full") -> DoseResult:
    """Electron dose (Gy) of an applicator at a pose in a CT (see the module docstring).

    Parameters
    ----------
    ct : Volume
        CT in HU (any orientation), ``patient_from_voxel`` to LPS mm.
    patient_from_applicator : numpy.ndarray
        4x4 rigid pose of the applicator frame (origin at the end-face centre, +z into
        tissue) in patient LPS mm.
    beam : ElectronBeam
        Machine, energy, applicator diameter and bevel (checked against the beam library).
    prescription_gy : float, default 10
        Dose at the ``isodose_percent`` isodose (Gy).
    grid_mm : float, default 2
        Spacing of the beam-aligned dose grid (mm), also the pencil width.
    isodose_percent : float, default 90
        Prescription isodose in % of the central-axis maximum.
    bolus_mm, bolus_rsp : float
        Bolus under the end face: thickness (mm) and relative stopping power.
    disc : ShieldingDisc, optional
        Shielding disc under the target.
    library : BeamLibrary, optional
        Beam data (default: the shipped library).
    backend : {"numba", "numpy"}
        Hot loops in numba (fast) or plain numpy (reference twin).
    fast : bool, default True
        Spread pencils of similar sigma (within 1 %) together (False: one by one).
    dose_to : {"water", "medium"}, default "water"
        Report dose to water (the beam data, prescriptions and clinical experience are dose
        to water) or dose to the local medium (dose to water times the mass collision
        stopping-power ratio medium/water of each voxel: ~9 % lower in cortical bone). The
        100 % level and the MU are those of dose to water either way.
    model : {"full", "preview"}, default "full"
        ``"preview"`` computes the same physics with pencils and voxels of at least
        :data:`PREVIEW_GRID_MM` (several times faster) for an applicator being dragged;
        ``DoseResult.model`` says which one a result is, so a display can show it.

    Returns
    -------
    DoseResult
        Dose on the beam-aligned grid in Gy, MU, 100 % level.

    Raises
    ------
    InputError
        Unknown machine/energy/applicator/bevel (message lists the valid choices), pose
        outside the CT, NaN in the CT along the beam, no tissue on the central axis.
    """
    start = time.perf_counter()
    _check_choices(ct, backend, dose_to, model)
    rx, h, iso, bolus, bolus_r = _check_options(prescription_gy, grid_mm, isodose_percent,
                                                bolus_mm, bolus_rsp, disc)
    if model == "preview":
        h = max(h, PREVIEW_GRID_MM)
    which = model
    model = electron_model(beam, library)
    pose = _check_pose(ct, patient_from_applicator)
    hu = np.ascontiguousarray(ct.array, dtype=np.float32)   # one numba signature
    rel = relative_dose(hu, ct.voxel_from_patient @ pose, model, grid_mm=h, bolus_mm=bolus,
                        bolus_rsp=bolus_r, disc=disc, backend=backend, fast=fast,
                        dose_to=dose_to)
    cax_max = _central_axis_max(rel)
    dmax_gy = rx / (iso / 100.0)
    dose_gy = (rel.dose * (dmax_gy / cax_max)).astype(np.float32)
    affine = pose @ rel.grid.applicator_from_voxel()
    factor, mu, mu_estimated = monitor_units(model.machine, beam, dmax_gy)
    return DoseResult(dose=Volume(dose_gy, affine), beam=beam, patient_from_applicator=pose,
                      prescription_gy=rx, isodose_percent=iso, dmax_gy=dmax_gy, mu=mu,
                      output_factor=factor, grid_mm=h,
                      compute_ms=1000.0 * (time.perf_counter() - start),
                      outside_ct_percent=rel.outside_ct_percent, mu_estimated=mu_estimated,
                      dose_to=dose_to, model=which)
