"""Monte Carlo electron dose (ompmc) of an applicator at a pose in a CT.

The phantom is a voxel grid aligned with the applicator (applicator frame, mm: origin at
the end-face centre, +z the beam, the grid's i, j, k = x, y, z), like the pencil beam's:
the CT is sampled (trilinear) at the voxel centres and turned into media and densities by
:mod:`models.dose.montecarlo.media`; the applicator lumen (inside the aperture radius,
upstream of the bevelled end face) is vacuum; CT outside the series is air. An optional
shielding disc is written into the phantom as its metal. Electrons start from the
:mod:`~models.dose.montecarlo.source` model; ompmc (EGSnrc-derived class II condensed
history, Kawrakow 2000 doi:10.1118/1.598917; PEGS4 700icru data) transports them.

Results: dose per incident electron and its relative statistical uncertainty per voxel,
both as :class:`models.patient.volume.Volume` on the beam-aligned grid, and a dose in Gy
scaled by the pencil beam's convention (100 % = central-axis maximum, the prescription at
``isodose_percent``), so the two engines are compared shape for shape.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import numpy as np

from models.base.errors import InputError
from models.beams.applicator import Applicator
from models.beams.library import ElectronBeam, default_library
from models.dose.montecarlo.media import VACUUM, media_table
from models.dose.montecarlo.source import SourceModel, aperture_beamlets, source_model
from models.patient.volume import Volume

log = logging.getLogger(__name__)

#: Lateral margin (mm) of the phantom beyond the aperture radius.
LATERAL_MARGIN_MM = 20.0

#: Depth (in units of the practical range Rp) the phantom reaches below the end face.
DEPTH_RP_FACTOR = 1.35

#: Electron and photon transport cut-offs (MeV, total / kinetic) of every run.
ECUT_MEV = 0.7
PCUT_MEV = 0.01

#: HU given to points outside the CT.
OUTSIDE_HU = -1000.0

#: Statistical batches of a run (at least 10 for a stable uncertainty).
BATCHES = 10

#: Histories of the pilot run that sizes a run for a target uncertainty.
PILOT_HISTORIES = 100_000

#: Dose level (fraction of the maximum) above which the mean uncertainty is quoted.
UNCERTAINTY_LEVEL = 0.5

#: Mass density (g/cm3) below which a voxel is air: its (noisy) dose to air is set to 0,
#: as the pencil beam gives no dose in air.
AIR_DENSITY_G_CM3 = 0.05


class McCancelled(Exception):
    """The Monte Carlo run was stopped before it finished (no result)."""


@dataclass(frozen=True)
class McOptions:
    """Frozen run options.

    Parameters
    ----------
    grid_mm : float
        Voxel size (mm) of the beam-aligned phantom.
    histories : int or None
        Fixed number of histories; None: sized for ``uncertainty_percent``.
    uncertainty_percent : float
        Target mean relative uncertainty (%, 1 sigma) of the voxels above
        :data:`UNCERTAINTY_LEVEL` of the maximum, used when ``histories`` is None.
    max_histories : int
        Upper bound of a sized run.
    seeds : tuple of int
        ompmc random-number seeds.
    depth_mm : float or None
        Phantom depth below the end face (mm); None: ``DEPTH_RP_FACTOR`` x Rp.
    lateral_margin_mm : float
        Phantom margin beyond the aperture radius (mm).
    """

    grid_mm: float = 2.0
    histories: int | None = None
    uncertainty_percent: float = 2.0
    max_histories: int = 20_000_000
    seeds: tuple[int, int] = (97, 33)
    depth_mm: float | None = None
    lateral_margin_mm: float = LATERAL_MARGIN_MM

    def __post_init__(self) -> None:
        if not (math.isfinite(self.grid_mm) and 0.5 <= self.grid_mm <= 5.0):
            raise InputError(f"Monte Carlo grid must be 0.5-5 mm, got {self.grid_mm!r}")
        if self.histories is not None and self.histories < 1000:
            raise InputError(f"histories must be at least 1000, got {self.histories!r}")
        if not (math.isfinite(self.uncertainty_percent)
                and 0.2 <= self.uncertainty_percent <= 20.0):
            raise InputError("the target uncertainty must be 0.2-20 %, got "
                             f"{self.uncertainty_percent!r}")


@dataclass(frozen=True, eq=False)
class McPhantom:
    """Beam-aligned voxel phantom.

    ``x_mm``, ``y_mm``, ``z_mm``: voxel boundaries (applicator frame); ``media``: ompmc
    medium names (index 1..M); ``material`` (nx, ny, nz) int32 and ``density`` (nx, ny, nz)
    float64 g/cm3, Fortran order (x fastest), material 0 = vacuum.
    """

    x_mm: np.ndarray
    y_mm: np.ndarray
    z_mm: np.ndarray
    media: tuple[str, ...]
    material: np.ndarray
    density: np.ndarray

    @property
    def applicator_from_voxel(self) -> np.ndarray:
        """4x4 from voxel index (i, j, k, 1) to applicator-frame mm (voxel centres)."""
        h = np.array([self.x_mm[1] - self.x_mm[0], self.y_mm[1] - self.y_mm[0],
                      self.z_mm[1] - self.z_mm[0]])
        out = np.diag([*h, 1.0])
        out[:3, 3] = [self.x_mm[0] + 0.5 * h[0], self.y_mm[0] + 0.5 * h[1],
                      self.z_mm[0] + 0.5 * h[2]]
        return out


@dataclass(eq=False)
class McDose:
    """Monte Carlo dose of one beam at one pose.

    Attributes
    ----------
    dose : Volume
        Dose in Gy on the beam-aligned grid (scaled like the pencil beam: the
        ``isodose_percent`` isodose of the central-axis maximum carries the prescription).
    per_history : Volume
        Dose per incident electron (ompmc units, Gy per unit source weight).
    uncertainty : Volume
        Relative statistical uncertainty (fraction, 1 sigma) per voxel; 1 where no dose.
    density : Volume
        Mass density (g/cm3) of the phantom voxels (0 in the applicator lumen).
    beam : ElectronBeam
    patient_from_applicator : numpy.ndarray
        4x4 pose used.
    source : SourceModel
    histories : int
        Histories transported (pilot included).
    seconds : float
        Wall time of the transport.
    mean_uncertainty_percent : float
        Mean relative uncertainty (%) of the voxels above 50 % of the maximum.
    dmax_gy : float
        100 % level (Gy).
    prescription_gy, isodose_percent : float
    """

    dose: Volume
    per_history: Volume
    uncertainty: Volume
    density: Volume
    beam: ElectronBeam
    patient_from_applicator: np.ndarray
    source: SourceModel
    histories: int
    seconds: float
    mean_uncertainty_percent: float
    dmax_gy: float
    prescription_gy: float
    isodose_percent: float


def ompmc_available() -> bool:
    """True when the optional ``ompmc`` package is installed.

    Looked up, not imported: the monitor asks on the UI thread, and importing loads the
    native transport library (and its OpenMP runtime) into the process that only starts
    the check's child. A broken installation fails in the child, as a failed check.
    """
    import importlib.util

    return importlib.util.find_spec("ompmc") is not None


def _ompmc():
    try:
        import ompmc
    except ImportError as exc:
        raise InputError("the Monte Carlo check needs the optional package ompmc: install "
                         "it with  pip install 'iort-guidance[mc]'") from exc
    return ompmc


def _bounds(lo: float, hi: float, h: float) -> np.ndarray:
    n = max(1, math.ceil((hi - lo) / h - 1e-9))
    return lo + h * np.arange(n + 1)


def build_phantom(ct: Volume, patient_from_applicator: np.ndarray, beam: ElectronBeam,
                  options: McOptions = McOptions(), *, disc=None) -> McPhantom:
    """The beam-aligned voxel phantom of ``beam`` at a pose in a CT (see module docstring).

    Parameters
    ----------
    ct : Volume
        CT in HU, ``patient_from_voxel`` to LPS mm.
    patient_from_applicator : numpy.ndarray
        4x4 applicator pose (patient LPS mm).
    beam : ElectronBeam
    options : McOptions
    disc : models.dose.electron.ShieldingDisc, optional
        Metal disc normal to the beam axis, at its ``centre_x_mm``/``centre_y_mm``
        (applicator frame).
    """
    machine = default_library().validate(beam)
    energy = machine.energy(beam.energy_mev)
    app = Applicator(beam.applicator_diameter_mm, beam.bevel_deg)
    h = float(options.grid_mm)
    r = app.radius_mm
    rise = r * app.slope
    half = math.ceil((r + options.lateral_margin_mm) / h) * h
    depth = options.depth_mm if options.depth_mm is not None else (
        DEPTH_RP_FACTOR * energy.points.rp_mm)
    x = _bounds(-half, half, h)
    z = _bounds(-math.ceil((rise + 2 * h) / h) * h, rise + depth, h)
    xc = 0.5 * (x[1:] + x[:-1])
    zc = 0.5 * (z[1:] + z[:-1])
    gx, gy, gz = np.meshgrid(xc, xc, zc, indexing="ij")          # (nx, ny, nz)
    pts = np.stack([gx.ravel(order="F"), gy.ravel(order="F"), gz.ravel(order="F")], axis=1)
    pose = np.asarray(patient_from_applicator, dtype=np.float64)
    lps = pts @ pose[:3, :3].T + pose[:3, 3]
    hu = ct.sample(lps, order=1, fill_value=OUTSIDE_HU)
    if not np.all(np.isfinite(hu)):
        raise InputError("the CT holds NaN where the Monte Carlo phantom lies; fix the "
                         "series or move the applicator")
    table = media_table()
    material, density = table.media_of(hu)
    media = list(table.names)
    lumen = (pts[:, 0] ** 2 + pts[:, 1] ** 2 <= r * r) & (pts[:, 2] < app.face_z_mm(
        pts[:, 0], pts[:, 1]))
    material[lumen] = VACUUM
    density[lumen] = 0.0
    if disc is not None:
        if disc.material not in table.shielding:
            raise InputError(f"no Monte Carlo medium for a {disc.material!r} disc; have: "
                             f"{', '.join(sorted(table.shielding))}")
        name, rho = table.shielding[disc.material]
        media.append(name)
        inside = (((pts[:, 0] - disc.centre_x_mm) ** 2 + (pts[:, 1] - disc.centre_y_mm) ** 2
                   <= (0.5 * disc.diameter_mm) ** 2)
                  & (pts[:, 2] >= disc.depth_mm)
                  & (pts[:, 2] < disc.depth_mm + disc.thickness_mm))
        material[inside] = len(media)
        density[inside] = rho
    shape = (xc.size, xc.size, zc.size)
    return McPhantom(x, x.copy(), z, tuple(media),
                     np.asfortranarray(material.reshape(shape, order="F").astype(np.int32)),
                     np.asfortranarray(density.reshape(shape, order="F")))


@contextlib.contextmanager
def _quiet_native_stdout() -> Iterator[None]:
    """Send what ompmc's C core prints to stdout (file paths, seeds) to /dev/null, so a
    caller's stdout (e.g. ``--json``) stays clean."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):    # no real stdout (e.g. captured)
        yield
        return
    sys.stdout.flush()
    saved = os.dup(fd)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), fd)
            yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


def _weighted_histories(weights: np.ndarray, histories: int, seed: int
                        ) -> tuple[np.ndarray, int]:
    """Beamlet weights (sum 1) and histories such that every weighted beamlet starts at
    least two electrons per batch (ompmc drops a beamlet below one per batch).

    Histories are raised to give each beamlet of the mean weight two electrons per batch.
    A beamlet still weaker is kept with the probability of its share (at the weight of
    two electrons per batch) -- random thinning, unbiased on average, reproducible by
    ``seed``: the tails of a fitted fluence cost no extra histories.
    """
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    histories = max(int(histories), 2 * BATCHES * int(np.count_nonzero(w)))
    floor = 2.0 / (histories // BATCHES)
    weak = (w > 0) & (w < floor)
    if weak.any():
        keep = np.random.default_rng(seed).random(int(weak.sum())) < w[weak] / floor
        w[weak] = np.where(keep, floor, 0.0)
    return w / w.sum(), histories


def _transport_one(ompmc, phantom: McPhantom, beamlets, weights: np.ndarray, spectrum,
                   sigma_mm: float, histories: int, seeds: tuple[int, int],
                   progress: Callable[[float], bool | None] | None):
    """One component: dose per incident electron (``weights`` (N,) per beamlet, any
    scale), its relative uncertainty and the histories run."""
    geometry = ompmc.Geometry(phantom.x_mm / 10.0, phantom.y_mm / 10.0, phantom.z_mm / 10.0,
                              list(phantom.media), phantom.density, phantom.material)
    src = ompmc.BeamletSource(
        i_beam=np.zeros(beamlets.count, dtype=np.int32),
        source=beamlets.source_mm[None, :] / 10.0, corner=beamlets.corner_mm / 10.0,
        side1=beamlets.side1_mm / 10.0, side2=beamlets.side2_mm / 10.0)
    weights, histories = _weighted_histories(weights, histories, seeds[0])
    physics = ompmc.Physics(seeds=tuple(int(s) for s in seeds), global_ecut=ECUT_MEV,
                            global_pcut=PCUT_MEV)
    with _quiet_native_stdout():
        dose, unc = ompmc.calc_forward(
            geometry, src, weights, spectrum,
            physics, n_histories=int(histories), n_batches=BATCHES, charge=-1,
            gaussian_source=sigma_mm > 0, source_width=max(sigma_mm, 1e-6) / 10.0,
            progress=progress)
    return np.asarray(dose, dtype=np.float64), np.asarray(unc, dtype=np.float64), histories


def _transport(ompmc, phantom: McPhantom, beamlets, fluence: np.ndarray,
               spectra: np.ndarray, source: SourceModel, histories: int,
               seeds: tuple[int, int], progress: Callable[[float], bool | None] | None):
    """All components of the source, histories shared by their electrons; per-electron
    dose. ``fluence`` (C, N): electrons per component and beamlet
    (:meth:`SourceModel.beamlet_fluence`); ``spectra`` (C, B) the applicator's spectrum
    per component (:meth:`SourceModel.spectrum`)."""
    shares = fluence.sum(axis=1) / fluence.sum()
    parts = [(float(shares[c]), spectra[c], source.source_sigma_mm[c],
              fluence[c]) for c in range(len(source.source_sigma_mm)) if shares[c] > 0]
    dose = np.zeros(phantom.material.shape)
    var = np.zeros(phantom.material.shape)
    done, total = 0.0, 0
    for k, (share, weights, sigma, per_beamlet) in enumerate(parts):
        spectrum = ompmc.Spectrum.from_histogram(source.edges_mev[1:], weights,
                                                 e_min=float(source.edges_mev[0]))

        def callback(fraction: float, lo=done, width=share):
            return progress(lo + width * fraction) if progress is not None else True
        d, u, n = _transport_one(ompmc, phantom, beamlets, per_beamlet, spectrum, sigma,
                                 max(1000, round(histories * share)),
                                 (seeds[0] + 7 * k, seeds[1]), callback)
        dose += share * d
        var += (share * d * u) ** 2
        total += n
        done += share
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.where(dose > 0, np.sqrt(var) / np.where(dose > 0, dose, 1.0), 1.0)
    return dose, rel, total


def mean_uncertainty(dose: np.ndarray, unc: np.ndarray, level: float = UNCERTAINTY_LEVEL
                     ) -> float:
    """Mean relative uncertainty (fraction) of the voxels above ``level`` x maximum."""
    peak = float(dose.max())
    if not peak > 0:
        return 1.0
    sel = dose >= level * peak
    return float(unc[sel].mean())


def _combine(a: tuple[np.ndarray, np.ndarray, int], b: tuple[np.ndarray, np.ndarray, int]):
    """History-weighted mean of two independent runs and its relative uncertainty."""
    da, ua, na = a
    db, ub, nb = b
    n = na + nb
    dose = (na * da + nb * db) / n
    sigma = np.sqrt((na * da * ua) ** 2 + (nb * db * ub) ** 2) / n
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.where(dose > 0, sigma / np.where(dose > 0, dose, 1.0), 1.0)
    return dose, rel, n


def run_phantom(phantom: McPhantom, beam: ElectronBeam, source: SourceModel | None = None,
                options: McOptions = McOptions(), *,
                progress: Callable[[float], None] | None = None,
                cancel: Callable[[], bool] | None = None
                ) -> tuple[np.ndarray, np.ndarray, int, float]:
    """Transport the beam through a phantom.

    Returns ``(dose, uncertainty, histories, seconds)``: dose per incident electron and
    relative uncertainty, each (nx, ny, nz) (x fastest, the phantom's axes).

    ``progress(fraction)`` is called after every batch; ``cancel()`` returning True stops
    the run (:class:`McCancelled`). Ctrl+C stops it as well (KeyboardInterrupt).
    """
    ompmc = _ompmc()
    source = source or source_model(beam)
    app = Applicator(beam.applicator_diameter_mm, beam.bevel_deg)
    beamlets = aperture_beamlets(app, source.virtual_ssd_mm)
    fluence = source.beamlet_fluence(app, beamlets)
    spectra, _how = source.spectrum(app)
    start = time.perf_counter()

    def make_callback(lo: float, hi: float):
        def callback(fraction: float) -> bool:
            if progress is not None:
                progress(lo + (hi - lo) * float(fraction))
            return not (cancel is not None and cancel())
        return callback

    def transport(histories: int, seeds: tuple[int, int], lo: float, hi: float):
        return _transport(ompmc, phantom, beamlets, fluence, spectra, source, histories,
                          seeds, make_callback(lo, hi))

    try:
        if options.histories is not None:
            dose, unc, n = transport(options.histories, options.seeds, 0.0, 1.0)
        else:
            pilot_n = min(PILOT_HISTORIES, options.max_histories)
            pilot = transport(pilot_n, options.seeds, 0.0, 0.05)
            u0 = mean_uncertainty(pilot[0], pilot[1])
            target = options.uncertainty_percent / 100.0
            total = min(options.max_histories, int(pilot[2] * (u0 / target) ** 2 * 1.05))
            log.info("Monte Carlo pilot: %d histories, %.2f %% -> %d histories for %.2f %%",
                     pilot[2], 100 * u0, total, 100 * target)
            if total > pilot[2] * 1.1:
                seeds = (options.seeds[0] + 1, options.seeds[1] + 1)
                main = transport(total - pilot[2], seeds, 0.05, 1.0)
                dose, unc, n = _combine(pilot, main)
            else:
                dose, unc, n = pilot
    except KeyboardInterrupt as exc:
        if cancel is not None and cancel():
            raise McCancelled("the Monte Carlo run was stopped") from exc
        raise
    if progress is not None:
        progress(1.0)
    return dose, unc, int(n), time.perf_counter() - start


def cax_maximum(dose_kji: np.ndarray) -> float:
    """Maximum of the central-axis dose of a beam-aligned grid (array [k, j, i]).

    The axis runs between the four central voxel columns of the symmetric grid; their
    mean, smoothed over three planes against statistical noise, is the central-axis dose.
    """
    nj, ni = dose_kji.shape[1:]
    j0, i0 = nj // 2 - 1, ni // 2 - 1
    column = dose_kji[:, j0:j0 + 2, i0:i0 + 2].mean(axis=(1, 2))
    smooth = np.convolve(column, np.ones(3) / 3.0, mode="same")
    return float(smooth.max())


def compute_mc_dose(ct: Volume, patient_from_applicator: np.ndarray, beam: ElectronBeam, *,
                    prescription_gy: float = 10.0, isodose_percent: float = 90.0,
                    options: McOptions = McOptions(), source: SourceModel | None = None,
                    disc=None, progress: Callable[[float], None] | None = None,
                    cancel: Callable[[], bool] | None = None) -> McDose:
    """Monte Carlo dose of an applicator at a pose in a CT (see the module docstring).

    Parameters
    ----------
    ct : Volume
        CT in HU.
    patient_from_applicator : numpy.ndarray
        4x4 pose (patient LPS mm).
    beam : ElectronBeam
    prescription_gy, isodose_percent : float
        Scaling of the Gy dose (the pencil beam's convention).
    options : McOptions
    source : SourceModel, optional
        Default: the shipped model of the beam's machine and energy.
    disc : models.dose.electron.ShieldingDisc, optional
    progress, cancel : callable, optional
        See :func:`run_phantom`.

    Raises
    ------
    InputError
        ompmc missing, unknown beam, NaN in the CT, no dose on the central axis.
    McCancelled
        ``cancel()`` stopped the run.
    """
    if not (math.isfinite(prescription_gy) and prescription_gy > 0):
        raise InputError(f"prescription must be > 0 Gy, got {prescription_gy!r}")
    if not (math.isfinite(isodose_percent) and 10 <= isodose_percent <= 100):
        raise InputError(f"isodose must be 10-100 %, got {isodose_percent!r}")
    source = source or source_model(beam)
    phantom = build_phantom(ct, patient_from_applicator, beam, options, disc=disc)
    dose, unc, n, seconds = run_phantom(phantom, beam, source, options, progress=progress,
                                        cancel=cancel)
    pose = np.asarray(patient_from_applicator, dtype=np.float64)
    affine = pose @ phantom.applicator_from_voxel
    dose = np.where(phantom.density >= AIR_DENSITY_G_CM3, dose, 0.0)
    dose_kji = np.ascontiguousarray(dose.transpose(2, 1, 0))
    unc_kji = np.ascontiguousarray(np.where(dose > 0, unc, 1.0).transpose(2, 1, 0))
    rho_kji = np.ascontiguousarray(phantom.density.transpose(2, 1, 0)).astype(np.float32)
    peak = cax_maximum(dose_kji)
    if not peak > 0:
        raise InputError("no Monte Carlo dose on the central axis: the applicator does not "
                         "face tissue in the CT (check the pose)")
    dmax_gy = prescription_gy / (isodose_percent / 100.0)
    return McDose(dose=Volume((dose_kji * (dmax_gy / peak)).astype(np.float32), affine),
                  per_history=Volume(dose_kji, affine),
                  uncertainty=Volume(unc_kji.astype(np.float32), affine),
                  density=Volume(rho_kji, affine), beam=beam,
                  patient_from_applicator=pose, source=source, histories=n, seconds=seconds,
                  mean_uncertainty_percent=100.0 * mean_uncertainty(dose, unc),
                  dmax_gy=dmax_gy, prescription_gy=float(prescription_gy),
                  isodose_percent=float(isodose_percent))


def with_source(source: SourceModel, **changes) -> SourceModel:
    """A copy of ``source`` with fields changed (e.g. a spectrum bin, a source spread)."""
    return replace(source, **changes)
