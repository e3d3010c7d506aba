"""Independent Monte Carlo second check of a confirmed electron plan.

:func:`run_mc_check` computes the plan's dose twice -- the pencil beam
(:func:`models.dose.electron.compute_electron_dose`, what the monitor showed) and the
Monte Carlo (:func:`models.dose.montecarlo.engine.compute_mc_dose`, ompmc with the
commissioned source model) -- on the case CT at the plan's pose, and compares them
(:func:`compare_doses`):

* 3-D gamma pass rates 3 %/2 mm and 2 %/2 mm (global, of the 100 % level), Monte Carlo
  as reference, on the tissue voxels inside its 10 % isodose
  (:func:`models.evaluation.gamma.gamma_pass_rate`);
* DVH differences with the DVHs the monitor logs
  (:func:`guidance.treatment.dose_service.evaluate_dose`): target D90 and V90, organ Dmax
  and D2;
* a verdict against :class:`McCheckThresholds` (documented in ``docs/montecarlo.md``):
  ``agree``, ``disagree`` (with the reasons) or ``inconclusive`` (the Monte Carlo's
  uncertainty in the target is above the limit).

Both doses follow the same normalisation (the prescription at the isodose of the
central-axis maximum), so the check tests the shape of the dose -- depth, penumbra,
heterogeneity, bevel -- and not the monitor units.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from guidance.treatment.dose_service import BeamChoice, evaluate_dose
from models.base.errors import InputError
from models.beams.applicator import Applicator
from models.beams.library import ElectronBeam
from models.evaluation.dvh import structure_bounds_mm
from models.evaluation.gamma import gamma_pass_rate
from models.patient.case import Case

#: Organs receiving less than this share of the prescription are not judged (% of Rx).
ORGAN_FLOOR_PERCENT = 10.0


@dataclass(frozen=True)
class McCheckThresholds:
    """Limits of the verdict (see ``docs/montecarlo.md`` for their sources).

    ``gamma_3_2_min_percent``: 3 %/2 mm pass rate (AAPM TG-218 action limit 90 %);
    ``gamma_2_2_min_percent``: 2 %/2 mm pass rate; ``d90_max_percent``: |D90 MC - D90 PB|
    in % of the prescription; ``v90_max_points``: |V90 MC - V90 PB| in percentage points;
    ``organ_max_percent``: |Dmax| and |D2| differences of organs in % of the prescription;
    ``max_uncertainty_percent``: Monte Carlo mean uncertainty in the target above which
    the check is inconclusive.
    """

    gamma_3_2_min_percent: float = 90.0
    gamma_2_2_min_percent: float = 80.0
    d90_max_percent: float = 5.0
    v90_max_points: float = 5.0
    organ_max_percent: float = 5.0
    max_uncertainty_percent: float = 3.0


@dataclass(frozen=True)
class OrganDifference:
    """Dmax and D2 (Gy) of one organ by both engines."""

    name: str
    pb_dmax_gy: float
    mc_dmax_gy: float
    pb_d2_gy: float
    mc_d2_gy: float


@dataclass(frozen=True)
class McCheckResult:
    """Outcome of the second check (doses in Gy, rates in %)."""

    beam: dict
    mc_beam: dict
    histories: int
    mc_seconds: float
    total_seconds: float
    mc_uncertainty_percent: float
    target_uncertainty_percent: float
    gamma_3_2_percent: float
    gamma_2_2_percent: float
    gamma_points: int
    target: str
    pb_d90_gy: float
    mc_d90_gy: float
    pb_v90_percent: float
    mc_v90_percent: float
    organs: tuple[OrganDifference, ...]
    verdict: str
    reasons: tuple[str, ...]
    source_commissioned: bool
    thresholds: McCheckThresholds = field(default_factory=McCheckThresholds)
    source_fluence: str = ""
    #: The shielding disc both engines had ("" without one).
    disc: str = ""

    def as_json(self) -> dict:
        """Plain dictionary (rounded) for ``--json`` and the report."""
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, float):
                out[key] = round(value, 3)
        out["organs"] = [{k: (round(v, 3) if isinstance(v, float) else v)
                          for k, v in asdict(o).items()} for o in self.organs]
        return out


def _fluence_note(mc) -> str:
    """How the Monte Carlo source's radial fluence was obtained for the plan's applicator."""
    b = mc.beam
    return mc.source.radial_fluence(Applicator(b.applicator_diameter_mm, b.bevel_deg))[1]


def _beam_dict(beam: ElectronBeam) -> dict:
    return {"machine": beam.machine, "energy_mev": beam.energy_mev,
            "applicator_mm": beam.applicator_diameter_mm, "bevel_deg": beam.bevel_deg}


def _target_uncertainty(case: Case, mc, target: str) -> float:
    mask = case.structures[target].mask
    pts = case.ct.voxel_to_patient(np.argwhere(mask)[:, ::-1].astype(np.float64))
    dose = mc.dose.sample(pts, order=0)
    unc = mc.uncertainty.sample(pts, order=0, fill_value=1.0)
    sel = dose >= 0.5 * mc.dmax_gy
    return 100.0 * float(unc[sel].mean()) if sel.any() else float("nan")


def _reasons(g3: float, g2: float, target: str, t_pb, t_mc, organs, rx: float,
             th: McCheckThresholds) -> list[str]:
    """The failed rules of the verdict, one line each."""
    reasons = []
    if not g3 >= th.gamma_3_2_min_percent:
        reasons.append(f"gamma 3%/2mm {g3:.1f} % < {th.gamma_3_2_min_percent:g} %")
    if not g2 >= th.gamma_2_2_min_percent:
        reasons.append(f"gamma 2%/2mm {g2:.1f} % < {th.gamma_2_2_min_percent:g} %")
    d90 = 100.0 * (t_mc.d90_gy - t_pb.d90_gy) / rx
    if not abs(d90) <= th.d90_max_percent:
        reasons.append(f"{target} D90 differs by {d90:+.1f} % of the prescription "
                       f"(limit {th.d90_max_percent:g} %)")
    v90 = t_mc.v90_percent - t_pb.v90_percent
    if not abs(v90) <= th.v90_max_points:
        reasons.append(f"{target} V90 differs by {v90:+.1f} points (limit "
                       f"{th.v90_max_points:g})")
    for o in organs:
        if max(o.pb_dmax_gy, o.mc_dmax_gy) < ORGAN_FLOOR_PERCENT / 100.0 * rx:
            continue
        for what, a, b in (("Dmax", o.pb_dmax_gy, o.mc_dmax_gy), ("D2", o.pb_d2_gy,
                                                                  o.mc_d2_gy)):
            diff = 100.0 * (b - a) / rx
            if not abs(diff) <= th.organ_max_percent:
                reasons.append(f"{o.name} {what} differs by {diff:+.1f} % of the "
                               f"prescription (limit {th.organ_max_percent:g} %)")
    return reasons


def compare_doses(case: Case, pb, mc, choice: BeamChoice, *, target: str,
                  thresholds: McCheckThresholds = McCheckThresholds(),
                  mc_beam: ElectronBeam | None = None, total_seconds: float = 0.0
                  ) -> McCheckResult:
    """Compare a pencil-beam ``DoseResult`` with a Monte Carlo ``McDose`` of one plan.

    Parameters
    ----------
    case : Case
        The case (CT and structures) both were computed in.
    pb : models.dose.electron.DoseResult
    mc : models.dose.montecarlo.engine.McDose
    choice : BeamChoice
        Prescription and isodose of the DVHs.
    target : str
        Target structure name.
    thresholds : McCheckThresholds
    """
    # pencil beam on the Monte Carlo grid (trilinear, 0 outside its grid)
    pb_on_mc = pb.dose.resample_like(mc.dose, order=1, fill_value=0.0).array
    tissue = mc.density.array >= 0.05
    spacing = mc.dose.spacing_mm[::-1]
    norm = mc.dmax_gy
    g3 = gamma_pass_rate(mc.dose.array, pb_on_mc, spacing, dose_percent=3.0,
                         distance_mm=2.0, cutoff_percent=10.0, mask=tissue, norm=norm)
    g2 = gamma_pass_rate(mc.dose.array, pb_on_mc, spacing, dose_percent=2.0,
                         distance_mm=2.0, cutoff_percent=10.0, mask=tissue, norm=norm)
    bounds = {name: structure_bounds_mm(case.ct, s.mask)
              for name, s in case.structures.items()}
    pb_dvh, _ = evaluate_dose(case, pb.dose, choice, bounds)
    mc_dvh, _ = evaluate_dose(case, mc.dose, choice, bounds)
    if target not in pb_dvh or target not in mc_dvh:
        raise InputError(f"target {target!r} lies outside the dose grid: nothing to compare")
    t_pb, t_mc = pb_dvh[target].metrics, mc_dvh[target].metrics
    rx = choice.prescription_gy
    organs = tuple(OrganDifference(name, pb_dvh[name].metrics.dmax_gy,
                                   mc_dvh[name].metrics.dmax_gy, pb_dvh[name].metrics.d2_gy,
                                   mc_dvh[name].metrics.d2_gy)
                   for name in sorted(pb_dvh) if name != target and name in mc_dvh)
    t_unc = _target_uncertainty(case, mc, target)
    reasons = _reasons(g3.pass_percent, g2.pass_percent, target, t_pb, t_mc, organs, rx,
                       thresholds)
    th = thresholds
    if reasons:
        verdict = "disagree"
    elif not (math.isfinite(t_unc) and t_unc <= th.max_uncertainty_percent):
        verdict = "inconclusive"
        reasons.append(f"Monte Carlo uncertainty in {target} {t_unc:.1f} % > "
                       f"{th.max_uncertainty_percent:g} %: run more histories")
    else:
        verdict = "agree"
    return McCheckResult(
        beam=_beam_dict(pb.beam), mc_beam=_beam_dict(mc_beam or mc.beam),
        histories=mc.histories, mc_seconds=mc.seconds, total_seconds=total_seconds,
        mc_uncertainty_percent=mc.mean_uncertainty_percent,
        target_uncertainty_percent=t_unc, gamma_3_2_percent=g3.pass_percent,
        gamma_2_2_percent=g2.pass_percent, gamma_points=g3.points, target=target,
        pb_d90_gy=t_pb.d90_gy, mc_d90_gy=t_mc.d90_gy, pb_v90_percent=t_pb.v90_percent,
        mc_v90_percent=t_mc.v90_percent, organs=organs, verdict=verdict,
        reasons=tuple(reasons), source_commissioned=mc.source.commissioned,
        thresholds=thresholds, source_fluence=_fluence_note(mc))


def run_mc_check(case: Case, spec, *, target: str = "CTV", grid_mm: float = 2.0,
                 uncertainty_percent: float = 2.0, histories: int | None = None,
                 pb_beam: ElectronBeam | None = None,
                 thresholds: McCheckThresholds = McCheckThresholds(), disc=None,
                 progress: Callable[[float], None] | None = None,
                 cancel: Callable[[], bool] | None = None):
    """Pencil beam and Monte Carlo of a plan in a case, compared.

    Parameters
    ----------
    case : Case
        Case with a CT in HU and the ``target`` structure.
    spec : models.dicom.rt_export.PlanSpec
        The confirmed plan (beam, pose, prescription).
    target : str
    grid_mm : float
        Voxel size of both engines (mm).
    uncertainty_percent : float
        Target mean Monte Carlo uncertainty (%) of the voxels above 50 % (ignored when
        ``histories`` is given).
    histories : int, optional
        Fixed number of Monte Carlo histories.
    pb_beam : ElectronBeam, optional
        Beam given to the pencil beam (default: the plan's) -- a wrong one must be caught.
    thresholds : McCheckThresholds
    disc : models.dose.electron.ShieldingDisc, optional
        Shielding disc in both engines (applicator frame); default: the disc placed in the
        case (``case.disc``, an intraoperative edit), if any.
    progress, cancel : callable, optional
        Monte Carlo progress (fraction) and stop request.

    Returns
    -------
    tuple
        ``(McCheckResult, pencil-beam DoseResult, McDose)``.
    """
    from models.dose.electron import compute_electron_dose
    from models.dose.montecarlo.engine import McOptions, compute_mc_dose

    start = time.perf_counter()
    if target not in case.structures:
        raise InputError(f"--target {target!r}: no such structure; have: "
                         f"{', '.join(sorted(case.structures))}")
    beam = spec.beam
    choice = BeamChoice(energy_mev=beam.energy_mev,
                        applicator_diameter_mm=beam.applicator_diameter_mm,
                        bevel_deg=beam.bevel_deg, prescription_gy=spec.prescription_gy,
                        isodose_percent=spec.isodose_percent)
    if disc is None and getattr(case, "disc", None) is not None:
        from models.dose.disc import disc_in_beam

        disc = disc_in_beam(case.disc, spec.patient_from_applicator)
    pb = compute_electron_dose(case.ct, spec.patient_from_applicator, pb_beam or beam,
                               prescription_gy=spec.prescription_gy, grid_mm=grid_mm,
                               isodose_percent=spec.isodose_percent, disc=disc)
    options = McOptions(grid_mm=grid_mm, histories=histories,
                        uncertainty_percent=uncertainty_percent)
    mc = compute_mc_dose(case.ct, spec.patient_from_applicator, beam,
                         prescription_gy=spec.prescription_gy,
                         isodose_percent=spec.isodose_percent, options=options,
                         disc=disc, progress=progress, cancel=cancel)
    result = compare_doses(case, pb, mc, choice, target=target, thresholds=thresholds,
                           total_seconds=time.perf_counter() - start)
    if disc is not None:
        result = replace(result, disc=f"{disc.material} {disc.diameter_mm:g} mm x "
                                      f"{disc.thickness_mm:g} mm at {disc.depth_mm:g} mm")
    return result, pb, mc
