"""Monte Carlo second check (ompmc) of the phantom plan.

Keys
----
``mc.check_s``
    Wall time (s) of ``run_mc_check`` on the built-in phantom's plan (liac 8 MeV, 70 mm,
    its planned pose), 2 mm voxels, histories sized for 2 % mean uncertainty (1 %
    with ``quick``: 5 %): pencil beam + Monte Carlo + gamma + DVHs. Issue 16: <= 600 s.
``mc.histories``, ``mc.target_uncertainty_percent``
    Histories run and the Monte Carlo mean uncertainty (%) in the target (CTV).
``mc.gamma_3_2_percent``, ``mc.gamma_2_2_percent``
    Gamma pass rates of the pencil beam against the Monte Carlo.
``mc.verdict_agree``
    1 when the verdict is ``agree``.
``mc.wrong_energy_caught``
    1 when the pencil beam given 6 MeV for the 8 MeV plan is judged ``disagree`` (same
    Monte Carlo run, not repeated).

Skipped (no keys) when ompmc is not installed.
"""

from __future__ import annotations

GROUP = "mc"


def run(*, quick: bool = False) -> dict[str, float]:
    from guidance.treatment.dose_service import BeamChoice
    from guidance.treatment.mc_check import compare_doses, run_mc_check
    from models.beams.library import ElectronBeam
    from models.dicom.rt_export import resolve_plan
    from models.dose.electron import compute_electron_dose
    from models.dose.montecarlo.engine import ompmc_available
    from models.patient.phantom import make_phantom

    if not ompmc_available():
        return {}
    case = make_phantom()
    spec = resolve_plan(case)
    result, _pb, mc = run_mc_check(case, spec, grid_mm=2.0,
                                   uncertainty_percent=5.0 if quick else 2.0)
    out = {"mc.check_s": result.total_seconds, "mc.histories": float(result.histories),
           "mc.target_uncertainty_percent": result.target_uncertainty_percent,
           "mc.gamma_3_2_percent": result.gamma_3_2_percent,
           "mc.gamma_2_2_percent": result.gamma_2_2_percent,
           "mc.verdict_agree": float(result.verdict == "agree")}
    wrong = ElectronBeam(spec.machine, 6.0, spec.applicator_diameter_mm, spec.bevel_deg)
    pb_wrong = compute_electron_dose(case.ct, spec.patient_from_applicator, wrong,
                                     prescription_gy=spec.prescription_gy, grid_mm=2.0,
                                     isodose_percent=spec.isodose_percent)
    choice = BeamChoice(energy_mev=spec.energy_mev,
                        applicator_diameter_mm=spec.applicator_diameter_mm,
                        bevel_deg=spec.bevel_deg, prescription_gy=spec.prescription_gy,
                        isodose_percent=spec.isodose_percent)
    caught = compare_doses(case, pb_wrong, mc, choice, target="CTV")
    out["mc.wrong_energy_caught"] = float(caught.verdict == "disagree")
    return out
