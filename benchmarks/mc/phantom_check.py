"""The Monte Carlo second check on the built-in phantom plan, with deliberately wrong
pencil-beam energies (issue 16's phantom criterion).

Runs :func:`guidance.treatment.mc_check.run_mc_check` on the phantom's plan (its planned
pose and beam, 2 mm voxels, histories for 2 % mean uncertainty) -- what
``iort dose mc-check phantom`` does -- then compares the *same* Monte Carlo dose with
pencil beams given a wrong energy (one step below and above), which the verdict must
call "disagree". Writes ``tests/data/mc/mc_check_phantom.json``.

Run: ``OMP_NUM_THREADS=2 python -m benchmarks.mc.phantom_check`` (about 7 min on 2 free
cores).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from guidance.treatment.dose_service import BeamChoice
from guidance.treatment.mc_check import compare_doses, run_mc_check
from models.beams.library import ElectronBeam
from models.dicom.rt_export import resolve_plan
from models.dose.electron import compute_electron_dose
from models.patient.phantom import make_phantom

OUT = Path(__file__).resolve().parents[2] / "tests" / "data" / "mc" / "mc_check_phantom.json"

#: Wrong pencil-beam energies (MeV) given for the phantom's plan.
WRONG_ENERGIES_MEV = (6.0, 10.0)


def main() -> int:
    case = make_phantom()
    spec = resolve_plan(case)
    start = time.perf_counter()
    result, _pb, mc = run_mc_check(case, spec, grid_mm=2.0, uncertainty_percent=2.0)
    check_s = time.perf_counter() - start
    runs = [result.as_json()]
    choice = BeamChoice(energy_mev=spec.energy_mev,
                        applicator_diameter_mm=spec.applicator_diameter_mm,
                        bevel_deg=spec.bevel_deg, prescription_gy=spec.prescription_gy,
                        isodose_percent=spec.isodose_percent)
    for energy in WRONG_ENERGIES_MEV:
        wrong = ElectronBeam(spec.machine, energy, spec.applicator_diameter_mm,
                             spec.bevel_deg)
        pb = compute_electron_dose(case.ct, spec.patient_from_applicator, wrong,
                                   prescription_gy=spec.prescription_gy, grid_mm=2.0,
                                   isodose_percent=spec.isodose_percent)
        runs.append(compare_doses(case, pb, mc, choice, target="CTV").as_json())
    for r in runs:
        print(r["beam"]["energy_mev"], r["verdict"], r["gamma_3_2_percent"],
              r["gamma_2_2_percent"], r["reasons"], flush=True)
    OUT.write_text(json.dumps({
        "description": (f"iort dose mc-check on the built-in phantom plan ({spec.machine} "
                        f"{spec.energy_mev:g} MeV, {spec.applicator_diameter_mm:g} mm, "
                        "planned pose), 2 mm voxels, --uncertainty 2; further rows: the "
                        "same Monte Carlo against a pencil beam given the wrong energy"),
        "check_s": round(check_s, 1), "runs": runs}, indent=1) + "\n")
    print(f"check {check_s:.0f} s -> {OUT.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
