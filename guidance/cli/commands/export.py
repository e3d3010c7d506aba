"""``iort export CASE --out DIR``: the plan as DICOM-RT (RTSTRUCT, RTPLAN, RTDOSE).

All three objects carry the case's patient, study and the CT's Frame of Reference; the
RTSTRUCT references the CT series slice by slice, the RTPLAN references the RTSTRUCT and
the RTDOSE references the RTPLAN (DoseSummationType PLAN). ``--with-ct`` also writes the CT
series with its original UIDs, so the folder is a complete package (recommended with
``--anonymise``, which replaces patient name/ID/birth date/sex in every object it writes).

Plan parameters come from, in order: the command-line options, the ``--plan`` JSON file,
the case's stored plan (``case.plan``), and -- for the built-in phantom only -- the
phantom's planned applicator pose with the demo's beam. Keys read from a plan dictionary::

    {"patient_from_applicator": [[4x4]], "machine": "liac", "energy_mev": 8,
     "applicator_diameter_mm": 70, "bevel_deg": 0, "prescription_gy": 10,
     "isodose_percent": 90}

The dose stored in the case is exported when it belongs to the stored plan (the plan has
``"mu"`` and no option changes it); otherwise it is computed for the planned pose with the
electron engine (its MU go into the RTPLAN), or refused with ``--no-compute``. The RTDOSE
is written on a grid of the CT's axes covering the dose.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.base.errors import InputError
from models.patient.phantom import PHANTOM_PATIENT_ID

log = logging.getLogger(__name__)

#: Beam used for the phantom when nothing else is given (same as ``iort demo``).
PHANTOM_DEFAULTS: dict[str, Any] = {"machine": "liac", "energy_mev": 8.0,
                                    "applicator_diameter_mm": 70.0, "bevel_deg": 0.0,
                                    "prescription_gy": 10.0, "isodose_percent": 90.0}
#: Depth (mm) searched along the central axis for the prescription point.
_AXIS_DEPTH_MM = 150.0


@dataclass(frozen=True)
class PlanSpec:
    """Everything the export needs to know about the plan."""

    machine: str
    energy_mev: float
    applicator_diameter_mm: float
    bevel_deg: float
    prescription_gy: float
    isodose_percent: float
    patient_from_applicator: np.ndarray
    mu: float | None = None  # known MU of a dose stored with the plan


@dataclass(frozen=True)
class ExportResult:
    """Files written by :func:`export_case` and the plan's key numbers."""

    out_dir: Path
    rtstruct: Path
    rtplan: Path
    rtdose: Path
    ct_files: int
    mu: float
    dose_max_gy: float
    reference_point_lps: np.ndarray
    anonymised: bool
    dose_computed: bool


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``export`` subcommand."""
    parser = subparsers.add_parser(
        "export", help="write the plan as DICOM-RT (RTSTRUCT, RTPLAN, RTDOSE)",
        description="Export a case's structures, electron IORT plan and dose as "
                    "DICOM-RT referencing the CT's Frame of Reference and series.")
    parser.add_argument("case", metavar="CASE",
                        help="a case folder (iort case import), a DICOM folder or 'phantom'")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help="output folder (must be empty unless --force)")
    parser.add_argument("--anonymise", "--anonymize", action="store_true",
                        help="replace patient name/ID/birth date/sex in the written files")
    parser.add_argument("--with-ct", action="store_true",
                        help="also write the CT series (same UIDs), for a complete package")
    parser.add_argument("--force", action="store_true", help="write into a non-empty folder")
    parser.add_argument("--no-compute", action="store_true",
                        help="refuse instead of computing the dose when the case has none")
    parser.add_argument("--plan", type=Path, metavar="FILE",
                        help="JSON with patient_from_applicator (4x4) and optionally the beam")
    parser.add_argument("--machine", help="accelerator beam data, e.g. liac")
    parser.add_argument("--energy", type=float, help="electron energy (MeV)")
    parser.add_argument("--applicator", type=float, help="applicator diameter (mm)")
    parser.add_argument("--bevel", type=float, help="applicator bevel (deg)")
    parser.add_argument("--prescription", type=float, help="prescribed dose (Gy)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load the case, resolve the plan, write the DICOM-RT objects."""
    from guidance.cli.inputs import load_case_spec

    case = load_case_spec(args.case)
    overrides = {"machine": args.machine, "energy_mev": args.energy,
                 "applicator_diameter_mm": args.applicator, "bevel_deg": args.bevel,
                 "prescription_gy": args.prescription}
    plan_file = _read_plan_file(args.plan) if args.plan is not None else None
    spec = resolve_plan(case, plan_file=plan_file, overrides=overrides)
    result = export_case(case, spec, args.out, anonymise=args.anonymise,
                         with_ct=args.with_ct, force=args.force, compute=not args.no_compute)
    print(f"exported {'anonymised ' if result.anonymised else ''}plan to {result.out_dir}: "
          f"{result.rtstruct.name}, {result.rtplan.name}, {result.rtdose.name}"
          f"{f', {result.ct_files} CT slices' if result.ct_files else ''}; "
          f"{spec.energy_mev:g} MeV, applicator {spec.applicator_diameter_mm:g} mm, "
          f"{result.mu:.1f} MU, {spec.prescription_gy:g} Gy to the "
          f"{spec.isodose_percent:g} % isodose, Dmax {result.dose_max_gy:.2f} Gy "
          f"({'computed for the planned pose' if result.dose_computed else 'stored dose'})")
    return 0


def _read_plan_file(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"--plan {path}: cannot read JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise InputError(f"--plan {path}: expected a JSON object with patient_from_applicator")
    return data


def resolve_plan(case: Any, *, plan_file: dict[str, Any] | None = None,
                 overrides: dict[str, Any] | None = None) -> PlanSpec:
    """Merge plan sources (options > plan file > case.plan > phantom defaults).

    The ``mu`` of a stored plan is kept (so its stored dose can be exported as is) only
    when no option changes the plan.

    Raises
    ------
    InputError
        No pose known (not the phantom and no plan), or a value of the wrong type.
    """
    from models.base.validation import as_transform

    merged: dict[str, Any] = {}
    if case.patient_id == PHANTOM_PATIENT_ID and "CTV" in case.structures:
        from models.patient.phantom import planned_patient_from_applicator

        merged.update(PHANTOM_DEFAULTS,
                      patient_from_applicator=planned_patient_from_applicator(case))
    changed = {k: v for k, v in (overrides or {}).items() if v is not None}
    for source in (case.plan, plan_file, changed):
        if source:
            merged.update({k: v for k, v in source.items() if v is not None})
    if changed:
        merged.pop("mu", None)
    if "patient_from_applicator" not in merged:
        raise InputError("no planned applicator pose: give --plan FILE with "
                         '{"patient_from_applicator": [[...4x4...]]} (the case has no plan)')
    missing = [k for k in PHANTOM_DEFAULTS if k not in merged]
    if missing:
        raise InputError(f"plan lacks {', '.join(missing)}: give them as options "
                         "(--machine, --energy, --applicator, --bevel, --prescription) "
                         "or in the --plan file")
    try:
        pose = as_transform(merged["patient_from_applicator"], name="patient_from_applicator",
                            rigid=True)
        return PlanSpec(machine=str(merged["machine"]),
                        energy_mev=float(merged["energy_mev"]),
                        applicator_diameter_mm=float(merged["applicator_diameter_mm"]),
                        bevel_deg=float(merged["bevel_deg"]),
                        prescription_gy=float(merged["prescription_gy"]),
                        isodose_percent=float(merged["isodose_percent"]),
                        patient_from_applicator=pose,
                        mu=float(merged["mu"]) if merged.get("mu") is not None else None)
    except (TypeError, ValueError) as exc:
        raise InputError(f"plan: {exc}") from exc


def reference_point_lps(dose: Any, patient_from_applicator: np.ndarray,
                        level_gy: float) -> np.ndarray:
    """Deepest point on the central axis receiving ``level_gy`` (the prescription point).

    Falls back to the central-axis dose maximum when no point reaches the level.
    """
    depths = np.arange(0.0, _AXIS_DEPTH_MM, 0.5)
    points = (patient_from_applicator[:3, :3] @ np.stack(
        [np.zeros_like(depths), np.zeros_like(depths), depths])).T \
        + patient_from_applicator[:3, 3]
    values = dose.sample(points)
    reached = np.flatnonzero(values >= level_gy * (1 - 1e-9))
    index = int(reached[-1]) if reached.size else int(np.argmax(values))
    return points[index]


def export_case(case: Any, spec: PlanSpec, out_dir: str | Path, *, anonymise: bool = False,
                with_ct: bool = False, force: bool = False, compute: bool = True
                ) -> ExportResult:
    """Write RTSTRUCT, RTPLAN, RTDOSE (and the CT) of a case's plan.

    The dose stored in the case is exported when it belongs to the plan (``spec.mu``
    known); otherwise the dose is computed for the planned pose, or -- with
    ``compute=False`` -- the export is refused.

    Parameters
    ----------
    case : models.patient.case.Case
        The case; it needs its CT slice UIDs (imported cases have them) unless ``with_ct``.
    spec : PlanSpec
        Beam, prescription and applicator pose (:func:`resolve_plan`).
    out_dir : str or Path
        Output folder (empty unless ``force``).
    anonymise : bool
        Replace patient identifiers in everything written.
    with_ct : bool
        Also write the CT series with the case's UIDs.
    force : bool
        Allow a non-empty output folder.
    compute : bool
        Allow computing the dose.
    """
    from models.beams.library import ElectronBeam
    from models.dicom.common import ensure_uids, identity_of, new_uid
    from models.dicom.image_writer import write_image_series
    from models.dicom.rtdose import dose_grid_like, write_rtdose
    from models.dicom.rtplan import ElectronPlan, write_rtplan
    from models.dicom.rtstruct import write_rtstruct
    from models.dicom.writer import prepare_output_dir
    from models.dose.electron import compute_electron_dose
    from models.evaluation.dvh import resample_dose

    use_stored = case.dose is not None and spec.mu is not None
    if not use_stored and not compute:
        reason = "holds no dose" if case.dose is None else "holds a dose without its plan's MU"
        raise InputError(f"the case {reason} and computing was not allowed (--no-compute); "
                         "drop --no-compute to compute the dose for the planned pose")
    out = prepare_output_dir(out_dir, force=force)
    if not with_ct and len(case.image_instance_uids) != case.ct.shape[0]:
        raise InputError("the case has no CT slice UIDs to reference (it was not imported "
                         "from DICOM); pass --with-ct to write the CT series as well")
    ensure_uids(case)
    identity = identity_of(case, anonymise=anonymise)
    ct_files = 0
    if with_ct:
        case.image_instance_uids = write_image_series(
            case.ct, out, identity, series_instance_uid=case.series_instance_uid,
            modality=case.modality, instance_uids=case.image_instance_uids or None,
            series_description="IORT planning CT")
        ct_files = len(case.image_instance_uids)

    if use_stored:
        source_dose, mu = case.dose, float(spec.mu)
        spacing = float(np.min(source_dose.spacing_mm))
    else:
        if case.modality != "CT":
            raise InputError(f"the case's images are {case.modality}, not CT: the electron "
                             "dose needs CT numbers; export a case imported from the CT")
        beam = ElectronBeam(spec.machine, spec.energy_mev, spec.applicator_diameter_mm,
                            spec.bevel_deg)
        result = compute_electron_dose(case.ct, spec.patient_from_applicator, beam,
                                       prescription_gy=spec.prescription_gy,
                                       isodose_percent=spec.isodose_percent)
        source_dose, mu, spacing = result.dose, result.mu, result.grid_mm
    dose = resample_dose(source_dose, dose_grid_like(source_dose, case.ct, spacing_mm=spacing))

    struct_uid, plan_uid = new_uid(), new_uid()
    rtstruct = write_rtstruct(case, out / "RS.dcm", anonymise=anonymise,
                              sop_instance_uid=struct_uid, series_number=2)
    reference = reference_point_lps(source_dose, spec.patient_from_applicator,
                                    spec.prescription_gy)
    plan = ElectronPlan(
        machine=spec.machine, energy_mev=spec.energy_mev,
        applicator_id=f"A{spec.applicator_diameter_mm:g}B{spec.bevel_deg:g}",
        applicator_diameter_mm=spec.applicator_diameter_mm, bevel_deg=spec.bevel_deg,
        mu=mu, prescription_gy=spec.prescription_gy,
        reference_point_lps=reference, patient_from_applicator=spec.patient_from_applicator,
        isodose_percent=spec.isodose_percent)
    rtplan = write_rtplan(out / "RP.dcm", plan, identity, structure_set_uid=struct_uid,
                          sop_instance_uid=plan_uid, series_number=3)
    rtdose = write_rtdose(out / "RD.dcm", dose, identity, referenced_plan_uid=plan_uid,
                          series_number=4)
    log.info("exported %s to %s (%.1f MU)", case.patient_id, out, mu)
    return ExportResult(out_dir=out, rtstruct=rtstruct, rtplan=rtplan, rtdose=rtdose,
                        ct_files=ct_files, mu=mu, dose_max_gy=float(dose.array.max()),
                        reference_point_lps=reference, anonymised=anonymise,
                        dose_computed=not use_stored)
