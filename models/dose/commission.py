"""Commissioning the electron pencil-beam model per energy, applicator and bevel.

Model fitted (per machine, energy, applicator, bevel)
------------------------------------------------------
The pencil-beam engine (:mod:`models.dose.electron`) keeps its physics: square pencils from
the (bevelled) end face, inverse square from the virtual source, Fermi-Eyges lateral spread.
What the fit sets, per combination, is

* the **broad-beam (pencil) depth dose** ``g(z)`` of that applicator: the curve the pencils
  carry before the lateral spread removes dose from the axis. It is found by iterative
  deconvolution: ``g <- g * D_data(z) / D_model(z)`` on the clinical axis, repeated until
  the model reproduces the data (the lateral-equilibrium loss of small fields and the
  bevel's geometry are the engine's own, so ``g`` stays close to a broad beam and changes
  smoothly with the field size: the applicator's scatter spectrum and, for 120 mm, the
  more penetrating beam);
* the **fluence profile** across the aperture: relative pencil weight against
  radius / aperture radius at :data:`FLUENCE_KNOTS` (the PMMA wall's scatter raises the
  rim), least squares on the two lateral profiles with the points weighted like the gamma
  test (:func:`_profile_weights`; plain weights are tried too where that fit misses the
  criteria, the better kept);
* ``sigma0_mm`` (the pencils' spread at the end face, :data:`SIGMA0_MM`) and
  ``sigma_scale``, a factor on the multiple-scattering spread (:data:`SIGMA_SCALES`),
  chosen for the best profile gamma;
* ``halo_fraction``: weight of a broad low-dose halo (electrons scattered by the
  applicator wall, lateral sigma ``models.dose.electron.HALO_SIGMA_MM``) that the
  profiles show outside the field.

An applicator the fit has not seen is predicted by interpolating these parameters linearly
in diameter (:meth:`models.beams.library.MachineData.commissioned_beam`).

Comparison (:func:`compare`) against the data, on the data's own points and with the model
averaged over the data's voxel: ``dR90``, ``dR50`` (mm), the surface dose difference (at the
first data depth, % of maximum), and the 1-D gamma pass rate (2 %/2 mm global, 10 % low-dose
cut-off, :func:`gamma_pass_percent`) on the depth dose and on the x and y profiles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from scipy.optimize import lsq_linear

from models.base.errors import InputError
from models.beams.commissioning import BeamCurves
from models.beams.depth_dose import analyse_depth_dose
from models.beams.library import (
    BeamLibrary,
    CommissionedBeam,
    ElectronBeam,
    MachineData,
    default_library,
)
from models.dose.electron import ElectronModel, build_electron_model
from models.dose.water import water_dose

#: Acceptance in water (issue "dose you can sign").
MAX_RANGE_ERROR_MM = 1.0
MAX_SURFACE_ERROR_PERCENT = 2.0
MIN_GAMMA_PASS_PERCENT = 95.0
GAMMA_DOSE_PERCENT = 2.0
GAMMA_DISTANCE_MM = 2.0
GAMMA_CUTOFF_PERCENT = 10.0

#: Radius / aperture radius of the fluence knots fitted to the profiles.
FLUENCE_KNOTS = np.array([0.0, 0.5, 0.75, 0.9, 1.0])

#: Weight (% of the centre dose per unit fluence) of the fluence's second differences.
FLUENCE_SMOOTHING = 5.0

#: Candidate weights of the applicator-scatter halo.
HALO_FRACTIONS = np.linspace(0.0, 0.3, 31)

#: Heel-to-toe slope of the tilt probe of the fluence fit: on a uniform fluence every
#: pencil weight stays positive, so the engine's clipping does not bend the basis.
TILT_PROBE = 0.5

#: Candidate factors on the multiple-scattering spread (tried at the best sigma0).
SIGMA_SCALES = (0.9, 1.0, 1.1)

#: Candidate spreads (mm) of the pencils at the end face (the applicator's edge penumbra).
SIGMA0_MM = (1.0, 2.0, 3.0, 4.5)

#: Fluence fits alternated with the depth-dose deconvolution: the in-plane profile of a
#: bevel crosses pencils at different depths, so it moves with the depth dose.
FLUENCE_PASSES = 3

#: Deconvolution iterations of the broad-beam depth dose.
DEPTH_ITERATIONS = 3

#: Dose grid (mm) of the fit and the comparison: the live engine's grid.
FIT_GRID_MM = 2.0

#: Step (mm) of the fitted depth-dose table and of the fine model curves.
TABLE_STEP_MM = 0.5

#: Step (mm) of the depth-dose table written to the machine file.
STORED_STEP_MM = 1.0


@dataclass(frozen=True, eq=False)
class ModelCurves:
    """Model on the data's points (voxel-averaged) and on fine axes for the gamma.

    Depth dose in % of its maximum, profiles in % of the clinical-axis value at that depth.
    """

    depth_dose: np.ndarray
    fine_depth_mm: np.ndarray
    fine_depth_dose: np.ndarray
    profile_x: np.ndarray
    profile_y: np.ndarray
    fine_lateral_mm: np.ndarray
    fine_profile_x: np.ndarray
    fine_profile_y: np.ndarray


@dataclass(frozen=True)
class Comparison:
    """Model against data for one combination (mm, % of maximum, % of points passing)."""

    energy_mev: float
    diameter_mm: float
    bevel_deg: float
    d_r90_mm: float
    d_r50_mm: float
    d_surface_percent: float
    gamma_depth_percent: float
    gamma_x_percent: float
    gamma_y_percent: float

    @property
    def passed(self) -> bool:
        """All water criteria met (ranges, surface dose, gamma on the three curves; a curve
        the data do not have, NaN, is not counted)."""
        return (abs(self.d_r90_mm) <= MAX_RANGE_ERROR_MM
                and abs(self.d_r50_mm) <= MAX_RANGE_ERROR_MM
                and abs(self.d_surface_percent) <= MAX_SURFACE_ERROR_PERCENT
                and self.min_gamma_percent >= MIN_GAMMA_PASS_PERCENT)

    @property
    def min_gamma_percent(self) -> float:
        """Lowest gamma pass rate of the curves the data have (%)."""
        rates = [g for g in (self.gamma_depth_percent, self.gamma_x_percent,
                             self.gamma_y_percent) if not math.isnan(g)]
        return min(rates) if rates else float("nan")


def gamma_pass_percent(ref_pos: np.ndarray, ref_dose: np.ndarray, eval_pos: np.ndarray,
                       eval_dose: np.ndarray, *, dose_percent: float = GAMMA_DOSE_PERCENT,
                       distance_mm: float = GAMMA_DISTANCE_MM,
                       cutoff_percent: float = GAMMA_CUTOFF_PERCENT) -> float:
    """1-D gamma pass rate (%) of an evaluated curve against reference points.

    Global dose criterion (``dose_percent`` of the reference maximum); reference points
    below ``cutoff_percent`` of it are left out. The evaluated curve is taken as piecewise
    linear between its points (``eval_pos`` increasing) and the gamma minimised exactly on
    every segment.
    """
    ref_pos = np.asarray(ref_pos, dtype=np.float64)
    ref_dose = np.asarray(ref_dose, dtype=np.float64)
    peak = float(ref_dose.max())
    keep = ref_dose >= cutoff_percent / 100.0 * peak
    if not keep.any():
        return float("nan")
    # exact minimum over each linear segment of the evaluated curve (a quadratic in t)
    x0 = np.asarray(eval_pos, dtype=np.float64)[None, :-1] / distance_mm
    y0 = np.asarray(eval_dose, dtype=np.float64)[None, :-1] / (dose_percent / 100.0 * peak)
    dx = np.diff(np.asarray(eval_pos, dtype=np.float64))[None, :] / distance_mm
    dy = np.diff(np.asarray(eval_dose, dtype=np.float64))[None, :] / (
        dose_percent / 100.0 * peak)
    rx = ref_pos[keep, None] / distance_mm
    ry = ref_dose[keep, None] / (dose_percent / 100.0 * peak)
    ax, ay = x0 - rx, y0 - ry
    t = np.clip(-(ax * dx + ay * dy) / np.maximum(dx * dx + dy * dy, 1e-300), 0.0, 1.0)
    gamma2 = (ax + t * dx) ** 2 + (ay + t * dy) ** 2
    return 100.0 * float(np.mean(gamma2.min(axis=1) <= 1.0 + 1e-12))


def box_offsets(size_mm: float, n: int = 3) -> np.ndarray:
    """(n,) offsets (mm) at the centres of n equal parts of a detector/voxel side
    (``[0]`` for a point detector): the sample points of a box average."""
    if size_mm <= 0.0:
        return np.zeros(1)
    return size_mm * ((np.arange(n) + 0.5) / n - 0.5)


def _box_average(dose, centres: np.ndarray, voxel_mm: tuple[float, float, float]
                 ) -> np.ndarray:
    """Mean of the trilinear dose over a voxel box around each centre (M, 3)."""
    ox, oy, oz = (box_offsets(v) for v in voxel_mm)
    grid = np.stack(np.meshgrid(ox, oy, oz, indexing="ij"), axis=-1).reshape(-1, 3)
    pts = centres[:, None, :] + grid[None, :, :]
    values = dose.sample(pts.reshape(-1, 3), order=1)
    return values.reshape(centres.shape[0], grid.shape[0]).mean(axis=1)


def model_curves(beam: ElectronBeam, curves: BeamCurves, model: ElectronModel | None = None,
                 *, library: BeamLibrary | None = None, grid_mm: float = FIT_GRID_MM
                 ) -> ModelCurves:
    """The model's depth dose and profiles where ``curves`` has data (see :class:`ModelCurves`)."""
    water = water_dose(beam, grid_mm=grid_mm, library=library, model=model).dose
    step = TABLE_STEP_MM
    z_end = float(curves.depth_mm[-1]) + 2.0
    fine_z = np.arange(0.5 * curves.voxel_mm[2], z_end, 0.25)
    line = np.stack([0 * fine_z, 0 * fine_z, fine_z], axis=1)
    fine_dd = _box_average(water, line, curves.voxel_mm)
    norm = float(fine_dd.max())
    fine_dd = 100.0 * fine_dd / norm
    dd = np.interp(curves.depth_mm, fine_z, fine_dd)
    if not np.isfinite(curves.profile_depth_mm):          # depth dose only
        none = np.zeros(0)
        return ModelCurves(dd, fine_z, fine_dd, none, none, none, none, none)
    reach = max(float(np.abs(curves.x_mm).max(initial=0.0)),
                float(np.abs(curves.y_mm).max(initial=0.0)), 1.0)
    lat = np.arange(-reach, reach + 0.5 * step, step)
    zc = curves.profile_depth_mm
    centre = _box_average(water, np.array([[0.0, 0.0, zc]]), curves.voxel_mm)[0]
    px = _box_average(water, np.stack([lat, 0 * lat, np.full_like(lat, zc)], axis=1),
                      curves.voxel_mm)
    py = _box_average(water, np.stack([0 * lat, lat, np.full_like(lat, zc)], axis=1),
                      curves.voxel_mm)
    px, py = 100.0 * px / centre, 100.0 * py / centre
    return ModelCurves(dd, fine_z, fine_dd, np.interp(curves.x_mm, lat, px),
                       np.interp(curves.y_mm, lat, py), lat, px, py)


def compare(curves: BeamCurves, mc: ModelCurves) -> Comparison:
    """Ranges, surface dose and gamma of the model against one combination's data."""
    data = analyse_depth_dose(curves.depth_mm, curves.depth_dose_percent)
    model = analyse_depth_dose(curves.depth_mm, mc.depth_dose)
    g_depth = gamma_pass_percent(curves.depth_mm, curves.depth_dose_percent,
                                 mc.fine_depth_mm, mc.fine_depth_dose)
    g_x = (gamma_pass_percent(curves.x_mm, curves.profile_x_percent, mc.fine_lateral_mm,
                              mc.fine_profile_x) if curves.x_mm.size else float("nan"))
    g_y = (gamma_pass_percent(curves.y_mm, curves.profile_y_percent, mc.fine_lateral_mm,
                              mc.fine_profile_y) if curves.y_mm.size else float("nan"))
    return Comparison(curves.energy_mev, curves.diameter_mm, curves.bevel_deg,
                      model.r90_mm - data.r90_mm, model.r50_mm - data.r50_mm,
                      float(mc.depth_dose[0] - curves.depth_dose_percent[0]),
                      g_depth, g_x, g_y)


def _beam(machine: MachineData, curves: BeamCurves) -> ElectronBeam:
    beam = ElectronBeam(machine.name, curves.energy_mev, curves.diameter_mm, curves.bevel_deg)
    machine.validate(beam)
    return beam


def _model(beam: ElectronBeam, machine: MachineData, entry: CommissionedBeam
           ) -> ElectronModel:
    return build_electron_model(beam, machine, entry.depth_mm, entry.dose_percent,
                                sigma_scale=entry.sigma_scale,
                                fluence_radius=entry.fluence_radius, fluence=entry.fluence,
                                fluence_tilt=entry.fluence_tilt, sigma0_mm=entry.sigma0_mm,
                                halo_fraction=entry.halo_fraction)


def _start(machine: MachineData, curves: BeamCurves) -> CommissionedBeam:
    """First guess: the data's own depth dose as the broad-beam curve, uniform fluence."""
    energy = machine.energy(curves.energy_mev)
    stretch = 1.0 / math.cos(math.radians(curves.bevel_deg))
    data_end = float(curves.depth_mm[-1]) * stretch
    z_end = max(float(energy.depth_mm[-1]), data_end + 5.0)
    depth = np.arange(0.0, z_end + 1e-9, TABLE_STEP_MM)
    inside = depth <= data_end
    dose = np.interp(depth / stretch, curves.depth_mm, curves.depth_dose_percent)
    tail = float(curves.depth_dose_percent[-1])
    dose[~inside] = tail * np.exp(-(depth[~inside] - data_end) / 20.0)
    return CommissionedBeam(curves.energy_mev, curves.diameter_mm, curves.bevel_deg, depth,
                            dose, 1.0, FLUENCE_KNOTS.copy(), np.ones(FLUENCE_KNOTS.size),
                            np.zeros(FLUENCE_KNOTS.size))


def _refine_depth(beam: ElectronBeam, machine: MachineData, curves: BeamCurves,
                  entry: CommissionedBeam) -> CommissionedBeam:
    """Deconvolve the broad-beam depth dose so the model's clinical axis meets the data.

    A pencil reaches the clinical-axis depth ``d`` after ``d / cos(bevel)`` of water, so the
    correction found at ``d`` applies to ``g`` there.
    """
    cos_b = math.cos(math.radians(curves.bevel_deg))
    for _ in range(DEPTH_ITERATIONS):
        mc = model_curves(beam, curves, _model(beam, machine, entry))
        ratio = np.clip(curves.depth_dose_percent / np.maximum(mc.depth_dose, 1e-3), 0.5, 2.0)
        low = curves.depth_dose_percent < 2.0            # noisy bremsstrahlung tail
        ratio[low] = 1.0
        dose = entry.dose_percent * np.interp(entry.depth_mm * cos_b, curves.depth_mm, ratio)
        entry = replace(entry, dose_percent=100.0 * dose / dose.max())
    return entry


def _profile_residual(curves: BeamCurves, mc: ModelCurves) -> float:
    """RMS profile difference (% of the centre) where the data are above the cut-off."""
    res = []
    for data, model in ((curves.profile_x_percent, mc.profile_x),
                        (curves.profile_y_percent, mc.profile_y)):
        keep = data >= GAMMA_CUTOFF_PERCENT
        res.append(model[keep] - data[keep])
    both = np.concatenate(res)
    return float(np.sqrt(np.mean(both ** 2))) if both.size else 0.0


def _profile_columns(beam: ElectronBeam, machine: MachineData, curves: BeamCurves,
                     entry: CommissionedBeam) -> np.ndarray:
    """Model profiles (x, y, then the centre) of one fluence basis ``entry``."""
    water = water_dose(beam, grid_mm=FIT_GRID_MM, model=_model(beam, machine, entry)).dose
    cols = []
    for axis, pos in ((0, curves.x_mm), (1, curves.y_mm)):
        pts = np.zeros((pos.size, 3))
        pts[:, axis] = pos
        pts[:, 2] = curves.profile_depth_mm
        cols.append(_box_average(water, pts, curves.voxel_mm))
    cols.append(_box_average(water, np.array([[0.0, 0.0, curves.profile_depth_mm]]),
                             curves.voxel_mm))
    return np.concatenate(cols)


def _profile_weights(curves: BeamCurves, gamma_shaped: bool = True) -> np.ndarray:
    """Least-squares weights of the x then y profile points, shaped like the gamma test.

    A dose difference counts against the gamma's dose criterion only where the profile is
    flat; on a gradient ``G`` (%/mm) the distance criterion forgives ``G x 2 mm``. So each
    point weighs ``1 / sqrt(1 + (G d / D)^2)`` (``d`` = 2 mm, ``D`` = 2 %), times 0.3
    below the 10 % cut-off: the fit spends the fluence knots on the plateau and shoulders
    the gamma judges rather than on the steepest penumbra. ``gamma_shaped=False``: 1 (0.3
    below the cut-off) everywhere.
    """
    weights = []
    for pos, dose in ((curves.x_mm, curves.profile_x_percent),
                      (curves.y_mm, curves.profile_y_percent)):
        grad = np.abs(np.gradient(dose, pos)) if pos.size > 1 else np.zeros(pos.size)
        base = np.where(dose >= GAMMA_CUTOFF_PERCENT, 1.0, 0.3)
        if not gamma_shaped:
            grad = 0.0 * grad
        weights.append(base / np.sqrt(1.0 + (grad * GAMMA_DISTANCE_MM
                                             / GAMMA_DOSE_PERCENT) ** 2))
    return np.concatenate(weights)


def _fit_fluence(beam: ElectronBeam, machine: MachineData, curves: BeamCurves,
                 entry: CommissionedBeam, gamma_shaped: bool = True) -> CommissionedBeam:
    """Fluence knots (and a bevel's heel-to-toe slope) by bounded least squares on the two
    profiles, the dose being linear in them; a second-difference penalty keeps the
    fluence smooth across the knots."""
    k = FLUENCE_KNOTS.size
    zero = np.zeros(k)
    tilted = curves.bevel_deg > 0.0
    bases = [replace(entry, fluence_radius=FLUENCE_KNOTS, fluence=np.eye(k)[i],
                     fluence_tilt=zero) for i in range(k)]
    columns = [_profile_columns(beam, machine, curves, b) for b in bases]
    if tilted:
        # the engine clips negative pencil weights, so a tilt alone (negative on the heel
        # half) is not a linear basis: it loses its heel half and the fit misplaces the
        # slope. Take it on top of a uniform fluence that keeps every weight positive,
        # minus that uniform fluence.
        uniform = replace(entry, fluence_radius=FLUENCE_KNOTS, fluence=np.ones(k),
                          fluence_tilt=zero)
        probe = replace(uniform, fluence_tilt=np.full(k, TILT_PROBE))
        columns.append((_profile_columns(beam, machine, curves, probe)
                        - _profile_columns(beam, machine, curves, uniform)) / TILT_PROBE)
    a = np.array(columns).T
    data = np.concatenate([curves.profile_x_percent, curves.profile_y_percent, [100.0]])
    weight = np.concatenate([_profile_weights(curves, gamma_shaped), [10.0]])
    a = a * (100.0 / float(a[-1, :k].sum()))        # uniform fluence -> 100 % centre
    smooth = np.zeros((k - 2, len(columns)))
    for i in range(k - 2):
        smooth[i, i:i + 3] = FLUENCE_SMOOTHING * np.array([1.0, -2.0, 1.0])
    lhs = np.vstack([a * weight[:, None], smooth])
    rhs = np.concatenate([data * weight, np.zeros(k - 2)])
    lower = np.array([0.0] * k + ([-np.inf] if tilted else []))
    x = lsq_linear(lhs, rhs, bounds=(lower, np.inf)).x
    fluence = x[:k]
    if not np.all(np.isfinite(x)) or fluence.max() <= 0.0:
        raise InputError(f"fluence fit failed for {beam}; check the profiles in the data")
    norm = max(float(fluence[0]), 1e-9)
    tilt = np.full(k, x[k] if tilted else 0.0)
    return replace(entry, fluence_radius=FLUENCE_KNOTS.copy(), fluence=fluence / norm,
                   fluence_tilt=tilt / norm)


def _fit_halo(beam: ElectronBeam, machine: MachineData, curves: BeamCurves,
              entry: CommissionedBeam, gamma_shaped: bool = True) -> CommissionedBeam:
    """Weight of the applicator-scatter halo: the profile is ``(D + h B) / (Dc + h Bc)``,
    ``B`` the halo of unit weight; ``h`` by a 1-D search on the weighted residual."""
    plain = _profile_columns(beam, machine, curves, replace(entry, halo_fraction=0.0))
    halo = _profile_columns(beam, machine, curves, replace(entry, halo_fraction=1.0)) - plain
    data = np.concatenate([curves.profile_x_percent, curves.profile_y_percent])
    weight = _profile_weights(curves, gamma_shaped)
    best = (np.inf, 0.0)
    for h in HALO_FRACTIONS:
        model = 100.0 * (plain[:-1] + h * halo[:-1]) / (plain[-1] + h * halo[-1])
        best = min(best, (float(np.sum((weight * (model - data)) ** 2)), float(h)))
    return replace(entry, halo_fraction=best[1])


def fit_beam(curves: BeamCurves, machine: MachineData | None = None
             ) -> tuple[CommissionedBeam, Comparison, ModelCurves]:
    """Fit one energy/applicator/bevel (see the module docstring); return it, its check and
    the model's curves.

    ``machine``: the machine's data (default: the shipped ``liac``).
    """
    machine = machine if machine is not None else default_library().machine("liac")
    beam = _beam(machine, curves)
    has_profiles = curves.x_mm.size > 0 and curves.y_mm.size > 0
    entry, check, mc, score = _fit_weighted(beam, machine, curves, has_profiles, True)
    if has_profiles and not check.passed:
        # the gamma-shaped weights missed: try plain least squares, keep the better
        other = _fit_weighted(beam, machine, curves, has_profiles, False)
        if other[3] < score:
            entry, check, mc, score = other
    return entry, check, mc


def _fit_weighted(beam: ElectronBeam, machine: MachineData, curves: BeamCurves,
                  has_profiles: bool, gamma_shaped: bool
                  ) -> tuple[CommissionedBeam, Comparison, ModelCurves, tuple]:
    """The trials of :func:`fit_beam` with one kind of profile weights; the best by the
    profile gamma, then the profile residual."""
    best: tuple[tuple[float, float], CommissionedBeam] | None = None
    trials = ([(s0, 1.0) for s0 in SIGMA0_MM] if has_profiles
              else [(machine.spread.sigma0_mm, 1.0)])
    for _ in range(2 if has_profiles else 1):
        for sigma0, scale in trials:
            entry = replace(_start(machine, curves), sigma_scale=scale, sigma0_mm=sigma0)
            entry = _refine_depth(beam, machine, curves, entry)
            if has_profiles:
                entry = _fit_fluence(beam, machine, curves, entry, gamma_shaped)
                entry = _fit_halo(beam, machine, curves, entry, gamma_shaped)
                entry = _fit_fluence(beam, machine, curves, entry, gamma_shaped)
                entry = _refine_depth(beam, machine, curves, entry)
                for _ in range(FLUENCE_PASSES - 1):
                    entry = _fit_fluence(beam, machine, curves, entry, gamma_shaped)
                    entry = _refine_depth(beam, machine, curves, entry)
            mc = model_curves(beam, curves, _model(beam, machine, entry))
            check = compare(curves, mc)
            score = ((-min(check.gamma_x_percent, check.gamma_y_percent),
                      _profile_residual(curves, mc)) if has_profiles else (0.0, 0.0))
            if best is None or score < best[0]:
                best = (score, entry)
        trials = [(best[1].sigma0_mm, scale) for scale in SIGMA_SCALES if scale != 1.0]
    entry = best[1]
    mc = model_curves(beam, curves, _model(beam, machine, entry))
    return entry, compare(curves, mc), mc, best[0]


def check_beam(curves: BeamCurves, machine: MachineData | None = None,
               entry: CommissionedBeam | None = None) -> tuple[Comparison, ModelCurves]:
    """Compare the machine's model (or ``entry``) of one combination with its data.

    ``machine`` defaults to the shipped ``liac``; without ``entry`` the machine's own
    tables are used (its commissioned parameters, interpolated for an unseen applicator).
    """
    machine = machine if machine is not None else default_library().machine("liac")
    beam = _beam(machine, curves)
    if entry is None:
        entry = machine.commissioned_beam(beam)
    if entry is not None:
        model = _model(beam, machine, entry)
    else:
        energy = machine.energy(beam.energy_mev)
        model = build_electron_model(beam, machine, energy.depth_mm, energy.dose_percent)
    mc = model_curves(beam, curves, model)
    return compare(curves, mc), mc


def pass_percent(comparisons: list[Comparison]) -> float:
    """Share (%) of combinations meeting every water criterion."""
    if not comparisons:
        return float("nan")
    return 100.0 * sum(c.passed for c in comparisons) / len(comparisons)


def commissioned_json(entry: CommissionedBeam) -> dict:
    """Row of the ``commissioned.beams`` block of a machine file."""
    keep = entry.dose_percent > 0.005
    last = int(np.nonzero(keep)[0][-1]) + 1 if keep.any() else entry.depth_mm.size
    every = max(1, round(STORED_STEP_MM / float(entry.depth_mm[1] - entry.depth_mm[0])))
    return {"energy_mev": entry.energy_mev, "diameter_mm": entry.diameter_mm,
            "bevel_deg": entry.bevel_deg, "sigma_scale": round(entry.sigma_scale, 4),
            "sigma0_mm": None if entry.sigma0_mm is None else round(entry.sigma0_mm, 3),
            "halo_fraction": round(entry.halo_fraction, 4),
            "fluence_radius": [round(float(v), 4) for v in entry.fluence_radius],
            "fluence": [round(float(v), 4) for v in entry.fluence],
            "fluence_tilt": [round(float(v), 4) for v in (
                entry.fluence_tilt if entry.fluence_tilt is not None
                else np.zeros_like(entry.fluence))],
            "depth_mm": [round(float(v), 2) for v in entry.depth_mm[:last:every]],
            "dose_percent": [round(float(v), 2) for v in entry.dose_percent[:last:every]]}


def write_commissioned(beam_json, entries: list[CommissionedBeam], *, provenance: dict
                       ) -> None:
    """Write fitted parameters into the ``commissioned`` block of a machine file.

    Rows of combinations not in ``entries`` are kept; ``provenance`` (source, licence
    notice, date, what was fitted) becomes the block's, the one it replaces is kept under
    ``"earlier"``.
    """
    from pathlib import Path

    from models.base.files import read_json_file
    from models.beams.commissioning import _dump_beam_json

    path = Path(beam_json)
    raw = read_json_file(path, what="beam data file")
    old = raw.get("commissioned", {})
    rows = {(float(r["energy_mev"]), float(r["diameter_mm"]), float(r["bevel_deg"])): r
            for r in old.get("beams", [])}
    for e in entries:
        rows[(e.energy_mev, e.diameter_mm, e.bevel_deg)] = commissioned_json(e)
    block_provenance = dict(provenance)
    if old.get("provenance") and len(rows) > len(entries):
        block_provenance["earlier"] = old["provenance"]
    raw["commissioned"] = {"provenance": block_provenance,
                           "beams": [rows[k] for k in sorted(rows)]}
    path.write_text(_dump_beam_json(raw))


@dataclass(frozen=True, eq=False)
class CommissioningRun:
    """Outcome of :func:`commission`.

    ``entries``: fitted parameters; ``fitted``: (data, check, model curves) of every
    fitted combination; ``predicted``: the same for a left-out applicator, predicted from
    the others (empty when none was left out).
    """

    entries: list[CommissionedBeam]
    fitted: list[tuple[BeamCurves, Comparison, ModelCurves]]
    predicted: list[tuple[BeamCurves, Comparison, ModelCurves]]


def commission(curves: list[BeamCurves], machine: MachineData, *,
               leave_out_mm: float | None = None, progress=None) -> CommissioningRun:
    """Fit every combination in ``curves`` (but a left-out applicator) and check the fit.

    ``progress(done, total, comparison)`` is called after each combination. With
    ``leave_out_mm`` that applicator is not fitted but predicted by interpolating the
    fitted neighbours' parameters in diameter, and compared with its data.
    """
    train = [c for c in curves if leave_out_mm is None
             or abs(c.diameter_mm - leave_out_mm) > 1e-6]
    test = [c for c in curves if c not in train]
    if leave_out_mm is not None and not test:
        raise InputError(f"--leave-out {leave_out_mm:g} mm: no data for that applicator")
    entries, fitted = [], []
    for done, c in enumerate(train, start=1):
        entry, check, mc = fit_beam(c, machine)
        entries.append(entry)
        fitted.append((c, check, mc))
        if progress is not None:
            progress(done, len(train), check)
    trained = replace(machine, commissioned={(e.energy_mev, e.diameter_mm, e.bevel_deg): e
                                             for e in entries})
    predicted = [(c, *check_beam(c, trained)) for c in test]
    return CommissioningRun(entries, fitted, predicted)
