"""A case's electron IORT plan as DICOM-RT (RTSTRUCT, RTPLAN, RTDOSE): the export core.

All objects carry the case's patient, study and the CT's Frame of Reference; the RTSTRUCT
references the CT series slice by slice, the RTPLAN references the RTSTRUCT and the RTDOSE
references the RTPLAN (DoseSummationType PLAN). The CT series can be written too with its
original UIDs, so the folder is a complete package.

Plan parameters (:func:`resolve_plan`) come from, in order: explicit overrides, a plan
dictionary (e.g. read from a JSON file), the case's stored plan (``case.plan``), and -- for
the built-in phantom only -- the phantom's planned applicator pose with the demo's beam.
Keys of a plan dictionary::

    {"patient_from_applicator": [[4x4]], "machine": "liac", "energy_mev": 8,
     "applicator_diameter_mm": 70, "bevel_deg": 0, "prescription_gy": 10,
     "isodose_percent": 90}

The RT reference point (:func:`reference_point_lps`) follows one rule for every plan this
project writes: the prescription point on the central axis, at the depth of the
prescription isodose.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
from pydantic import Field

from models.base.errors import InputError
from models.base.files import make_private_folders, read_json_file, write_private_text
from models.base.schema import FileSchema, bounded, check_file
from models.base.validation import MAX_TRANSLATION_MM, as_transform
from models.beams.library import ElectronBeam
from models.dicom.common import Identity, ensure_study_date, ensure_uids, identity_of, new_uid
from models.dicom.image_writer import write_image_series
from models.dicom.rtdose import dose_grid_like, write_rtdose
from models.dicom.rtplan import ElectronPlan, write_rtplan
from models.dicom.rtstruct import write_rtstruct
from models.dicom.writer import dicom_output
from models.evaluation.dvh import resample_dose
from models.patient.phantom import PHANTOM_PATIENT_ID
from models.patient.volume import Volume

if TYPE_CHECKING:  # pragma: no cover
    from models.dicom.deidentify import Deidentifier

log = logging.getLogger(__name__)

#: Beam used for the phantom when nothing else is given (same as ``iort demo``).
PHANTOM_DEFAULTS: dict[str, Any] = {"machine": "liac", "energy_mev": 8.0,
                                    "applicator_diameter_mm": 70.0, "bevel_deg": 0.0,
                                    "prescription_gy": 10.0, "isodose_percent": 90.0}
#: Depth (mm) searched along the central axis for the prescription point.
_AXIS_DEPTH_MM = 150.0
#: Step (mm) of that search.
_AXIS_STEP_MM = 0.5


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
    #: The institution's name of the treatment machine (RT Plan TreatmentMachineName, at
    #: most 16 characters); empty: the beam data's machine name.
    treatment_machine_name: str = ""

    def __post_init__(self) -> None:
        name = self.treatment_machine_name
        if len(name) > 16 or "\\" in name or not name.isprintable():
            raise InputError(f"treatment machine name {name!r}: at most 16 printable "
                             "characters without a backslash (DICOM SH)")

    @property
    def beam(self) -> ElectronBeam:
        """The plan's beam (machine, energy, applicator, bevel)."""
        return ElectronBeam(self.machine, self.energy_mev, self.applicator_diameter_mm,
                            self.bevel_deg)


@dataclass(frozen=True)
class PlanFiles:
    """RT Plan and RT Dose written by :func:`write_plan_and_dose`."""

    rtplan: Path
    rtdose: Path
    dose: Volume  # on the CT's axes, as written
    reference_point_lps: np.ndarray


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


_MatrixEntry = Annotated[float, bounded(-MAX_TRANSLATION_MM, MAX_TRANSLATION_MM,
                                        "pose entry (mm or cosine)", low_inclusive=True)]


class PlanFile(FileSchema):
    """Schema of a plan file (``iort dose case --write-plan``, read by ``--plan``).

    Every key is optional here (options and the case's plan fill in the rest); the pose
    must also be a rigid transform, checked by :func:`read_plan_file`.
    """

    patient_from_applicator: list[Annotated[list[_MatrixEntry],
                                            Field(min_length=4, max_length=4)]] | None = \
        Field(None, min_length=4, max_length=4)
    machine: str | None = Field(None, min_length=1, strict=True)
    energy_mev: float | None = bounded(0.0, 50.0, "nominal energy (MeV)", default=None)
    applicator_diameter_mm: float | None = bounded(0.0, 300.0, "applicator diameter (mm)",
                                                   default=None)
    bevel_deg: float | None = bounded(0.0, 90.0, "bevel angle (deg)", low_inclusive=True,
                                      default=None)
    prescription_gy: float | None = bounded(0.0, 100.0, "prescription (Gy)", default=None)
    isodose_percent: float | None = bounded(0.0, 100.0, "prescription isodose (%)",
                                            default=None)
    mu: float | None = bounded(0.0, 1e5, "monitor units", default=None)


def read_plan_file(path: str | Path, *, what: str = "--plan") -> dict[str, Any]:
    """A plan file as the plan dictionary :func:`resolve_plan` takes, every value checked.

    Raises
    ------
    InputError
        Unreadable, not a JSON object, a value of the wrong type or out of range, or a
        pose that is not a rigid 4x4 transform; one line naming the file and the field.
    """
    where = f"{what} {path}"
    data = read_json_file(path, what=what)
    checked = check_file(PlanFile, data, source=where,
                         hint='write {"patient_from_applicator": [[4x4]], "machine": ..., '
                              '"energy_mev": ...} as `iort dose case --write-plan` does')
    if checked.patient_from_applicator is not None:
        try:
            as_transform(np.asarray(checked.patient_from_applicator, dtype=np.float64),
                         name="patient_from_applicator", rigid=True)
        except InputError as exc:
            raise InputError(f"{where}: {exc}; write a rigid pose") from None
    out = dict(data)
    out.update({k: v for k, v in checked.model_dump().items() if v is not None})
    return out


def resolve_plan(case: Any, *, plan_file: dict[str, Any] | None = None,
                 overrides: dict[str, Any] | None = None) -> PlanSpec:
    """Merge plan sources (overrides > plan file > case.plan > phantom defaults).

    The ``mu`` of a stored plan is kept (so its stored dose can be exported as is) only
    when no override changes the plan.

    Raises
    ------
    InputError
        No pose known (not the phantom and no plan), or a value of the wrong type.
    """
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
                        mu=float(merged["mu"]) if merged.get("mu") is not None else None,
                        treatment_machine_name=str(merged.get("treatment_machine_name")
                                                   or ""))
    except (TypeError, ValueError) as exc:
        raise InputError(f"plan: {exc}") from exc


def write_plan_file(spec: PlanSpec, path: str | Path) -> Path:
    """Write the plan as the JSON object that ``iort run --plan`` and ``iort export --plan``
    read back with :func:`resolve_plan` (the keys of the module docstring).

    Parameters
    ----------
    spec : PlanSpec
        The plan; ``patient_from_applicator`` maps applicator coordinates (mm) to patient
        LPS (mm). Its ``mu`` is not written: a plan file carries no dose.
    path : str or Path
        The JSON file.

    Returns
    -------
    Path
        ``path``.
    """
    pose = np.asarray(spec.patient_from_applicator, dtype=np.float64).tolist()
    beam = {"machine": spec.machine, "energy_mev": spec.energy_mev,
            "applicator_diameter_mm": spec.applicator_diameter_mm,
            "bevel_deg": spec.bevel_deg, "prescription_gy": spec.prescription_gy,
            "isodose_percent": spec.isodose_percent}
    if spec.treatment_machine_name:
        beam["treatment_machine_name"] = spec.treatment_machine_name
    rows = ",\n    ".join(json.dumps(row) for row in pose)   # one matrix row per line
    text = (f'{{\n  "patient_from_applicator": [\n    {rows}\n  ],\n'
            + json.dumps(beam, indent=2)[2:] + "\n")
    return write_private_text(path, text)


def reference_point_lps(dose: Volume, patient_from_applicator: np.ndarray,
                        prescription_gy: float) -> np.ndarray:
    """The RT reference point: the prescription point on the central axis.

    The rule, the same for every RT Plan written here: walk the applicator's central axis
    (its +z from the end-face centre, 0 to 150 mm in 0.5 mm steps) and take the deepest
    point receiving ``prescription_gy``. The engine scales the dose so that the prescription
    isodose (``isodose_percent`` of the central-axis maximum) carries the prescription, so
    this is the depth of the prescription isodose (R90 for 90 %). When no point reaches the
    prescription, the central-axis dose maximum is taken.

    Parameters
    ----------
    dose : models.patient.volume.Volume
        Dose in Gy (anything with ``sample(points_lps)``).
    patient_from_applicator : numpy.ndarray
        4x4 applicator pose in patient LPS mm.
    prescription_gy : float
        Prescribed dose (Gy).

    Returns
    -------
    numpy.ndarray
        The point (3,) in patient LPS mm.
    """
    depths_mm = np.arange(0.0, _AXIS_DEPTH_MM, _AXIS_STEP_MM)
    points = (patient_from_applicator[:3, :3] @ np.stack(
        [np.zeros_like(depths_mm), np.zeros_like(depths_mm), depths_mm])).T \
        + patient_from_applicator[:3, 3]
    values = dose.sample(points)
    reached = np.flatnonzero(values >= prescription_gy * (1 - 1e-9))
    index = int(reached[-1]) if reached.size else int(np.argmax(values))
    return points[index]


#: RT Plan label of a plan whose MU rest on an estimated output factor (accepted explicitly).
ESTIMATED_MU_LABEL = "ESTIMATED MU"


def check_mu_usable(result: Any, *, accept_estimated_mu: bool) -> None:
    """Refuse MU that rest on an estimated output factor unless the user accepted them.

    Parameters
    ----------
    result : models.dose.electron.DoseResult
    accept_estimated_mu : bool
        The user asked for it explicitly (``--accept-estimated-mu``); the RT Plan is then
        labelled :data:`ESTIMATED_MU_LABEL`.
    """
    if result.mu_estimated and not accept_estimated_mu:
        beam = result.beam
        raise InputError(f"{beam.machine}: the output factor for {beam.energy_mev:g} MeV, "
                         f"{beam.applicator_diameter_mm:g} mm, bevel {beam.bevel_deg:g} deg is "
                         f"an estimate, so its {result.mu:.0f} MU must not be used to treat: "
                         "commission the machine's output factors, or pass "
                         "--accept-estimated-mu to write a plan labelled 'ESTIMATED MU'")


def electron_plan(spec: PlanSpec, mu: float, dose: Volume, *,
                  mu_estimated: bool = False) -> ElectronPlan:
    """The RT Plan content of a plan delivering ``dose`` with ``mu`` monitor units.

    The reference point follows :func:`reference_point_lps` on ``dose``; MU from an
    estimated output factor label the plan :data:`ESTIMATED_MU_LABEL`.
    """
    return ElectronPlan(
        machine=spec.treatment_machine_name or spec.machine, energy_mev=spec.energy_mev,
        applicator_id=f"A{spec.applicator_diameter_mm:g}B{spec.bevel_deg:g}",
        applicator_diameter_mm=spec.applicator_diameter_mm, bevel_deg=spec.bevel_deg,
        mu=mu, prescription_gy=spec.prescription_gy,
        reference_point_lps=reference_point_lps(dose, spec.patient_from_applicator,
                                                spec.prescription_gy),
        patient_from_applicator=spec.patient_from_applicator,
        isodose_percent=spec.isodose_percent,
        **({"label": ESTIMATED_MU_LABEL} if mu_estimated else {}))


def write_plan_and_dose(out_dir: Path, spec: PlanSpec, mu: float, dose: Volume, ct: Volume,
                        identity: Identity, *, spacing_mm: float,
                        rtplan_name: str = "RP.dcm", rtdose_name: str = "RD.dcm",
                        structure_set_uid: str = "", plan_series_number: int = 1,
                        dose_series_number: int = 1, mu_estimated: bool = False,
                        dose_to: str = "water",
                        deidentifier: Deidentifier | None = None) -> PlanFiles:
    """Write the RT Plan and, referencing it, the RT Dose on the CT's axes.

    Parameters
    ----------
    out_dir : Path
        Existing output folder.
    spec : PlanSpec
        Beam, prescription and applicator pose.
    mu : float
        Monitor units of ``dose``.
    dose : models.patient.volume.Volume
        Dose (Gy) on any grid; the RT Dose is resampled on the CT's axes (what planning
        systems expect) at ``spacing_mm``.
    ct : models.patient.volume.Volume
        The case's images.
    identity : Identity
        Patient, study and frame of reference written into both objects.
    spacing_mm : float
        RT Dose grid spacing (mm).
    rtplan_name, rtdose_name : str
        File names inside ``out_dir``.
    structure_set_uid : str
        RT Structure Set the plan references ("" for none).
    plan_series_number, dose_series_number : int
        Series numbers of the RT Plan and the RT Dose.
    mu_estimated : bool
        ``mu`` rests on an estimated output factor (already accepted by the user): the plan
        is labelled :data:`ESTIMATED_MU_LABEL`.
    dose_to : {"water", "medium"}
        What ``dose`` is, written to the RT Dose's DoseComment.
    deidentifier : models.dicom.deidentify.Deidentifier, optional
        Write both objects de-identified (their references stay consistent).
    """
    plan = electron_plan(spec, mu, dose, mu_estimated=mu_estimated)
    plan_uid = new_uid()
    rtplan = write_rtplan(out_dir / rtplan_name, plan, identity,
                          structure_set_uid=structure_set_uid, sop_instance_uid=plan_uid,
                          series_number=plan_series_number, deidentifier=deidentifier)
    on_ct_axes = resample_dose(dose, dose_grid_like(dose, ct, spacing_mm=spacing_mm))
    rtdose = write_rtdose(out_dir / rtdose_name, on_ct_axes, identity,
                          referenced_plan_uid=plan_uid,
                          series_number=dose_series_number, dose_to=dose_to,
                          deidentifier=deidentifier)
    return PlanFiles(rtplan=rtplan, rtdose=rtdose, dose=on_ct_axes,
                     reference_point_lps=plan.reference_point_lps)


def write_dose_of_pose(case: Any, spec: PlanSpec, out_dir: Path, *, grid_mm: float,
                       accept_estimated_mu: bool = False,
                       deidentifier: Deidentifier | None = None) -> tuple[Any, PlanFiles]:
    """Compute the electron dose of a plan in a case and write ``rtplan.dcm`` + ``rtdose.dcm``.

    What ``iort dose case`` writes: no RT Structure Set; study and frame-of-reference UIDs
    the case lacks are made deterministic from its patient ID.

    Parameters
    ----------
    case : models.patient.case.Case
        The case (CT in HU).
    spec : PlanSpec
        Beam, prescription and applicator pose (``mu`` is not used: the engine's MU are).
    out_dir : Path
        Output folder (created if missing).
    grid_mm : float
        Dose grid spacing (mm), also the RT Dose spacing.
    accept_estimated_mu : bool
        Write MU that rest on an estimated output factor (see :func:`check_mu_usable`).
    deidentifier : models.dicom.deidentify.Deidentifier, optional
        Write both files de-identified (PS3.15 Basic Profile, keyed UIDs and pseudonyms:
        with the same site key they match an anonymised export of the same case).

    Returns
    -------
    tuple
        The engine's ``DoseResult`` and the :class:`PlanFiles` written.
    """
    from models.dose.electron import compute_electron_dose

    result = compute_electron_dose(case.ct, spec.patient_from_applicator, spec.beam,
                                   prescription_gy=spec.prescription_gy, grid_mm=grid_mm,
                                   isodose_percent=spec.isodose_percent)
    check_mu_usable(result, accept_estimated_mu=accept_estimated_mu)
    ensure_uids(case, "iort-dose", case.patient_id)
    ensure_study_date(case)
    make_private_folders(out_dir)
    files = write_plan_and_dose(out_dir, spec, result.mu, result.dose, case.ct,
                                identity_of(case), spacing_mm=result.grid_mm,
                                rtplan_name="rtplan.dcm", rtdose_name="rtdose.dcm",
                                mu_estimated=result.mu_estimated,
                                dose_to=result.dose_to, deidentifier=deidentifier)
    return result, files


def _refuse_unless_exportable(case: Any, *, use_stored: bool, compute: bool) -> None:
    if not use_stored and not compute:
        reason = "holds no dose" if case.dose is None else "holds a dose without its plan's MU"
        raise InputError(f"the case {reason} and computing was not allowed (--no-compute); "
                         "drop --no-compute to compute the dose for the planned pose")


def _plan_dose(case: Any, spec: PlanSpec, *, use_stored: bool, accept_estimated_mu: bool
               ) -> tuple[Volume, float, float, bool]:
    """The dose to export, its MU, the RT Dose spacing (mm) and whether the MU are
    estimated: stored or computed."""
    if use_stored:
        return case.dose, float(spec.mu), float(np.min(case.dose.spacing_mm)), False
    if case.modality != "CT":
        raise InputError(f"the case's images are {case.modality}, not CT: the electron "
                         "dose needs CT numbers; export a case imported from the CT")
    from models.dose.electron import compute_electron_dose

    result = compute_electron_dose(case.ct, spec.patient_from_applicator, spec.beam,
                                   prescription_gy=spec.prescription_gy,
                                   isodose_percent=spec.isodose_percent)
    check_mu_usable(result, accept_estimated_mu=accept_estimated_mu)
    return result.dose, result.mu, result.grid_mm, result.mu_estimated


def export_case(case: Any, spec: PlanSpec, out_dir: str | Path, *,
                deidentifier: Deidentifier | None = None, with_ct: bool = False,
                force: bool = False, compute: bool = True,
                accept_estimated_mu: bool = False) -> ExportResult:
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
    deidentifier : models.dicom.deidentify.Deidentifier, optional
        De-identify everything written (PS3.15 Basic Profile with the options of
        :mod:`models.dicom.deidentify`; UIDs replaced consistently, so the package's
        references still resolve).
    with_ct : bool
        Also write the CT series with the case's UIDs.
    force : bool
        Allow a non-empty output folder.
    compute : bool
        Allow computing the dose.
    accept_estimated_mu : bool
        Write MU that rest on an estimated output factor (see :func:`check_mu_usable`).
    """
    use_stored = case.dose is not None and spec.mu is not None
    _refuse_unless_exportable(case, use_stored=use_stored, compute=compute)
    if not with_ct and len(case.image_instance_uids) != case.ct.shape[0]:
        raise InputError("the case has no CT slice UIDs to reference (it was not imported "
                         "from DICOM); pass --with-ct to write the CT series as well")
    # the dose (and the MU check) before anything is written: a refusal leaves no files
    source_dose, mu, spacing_mm, mu_estimated = _plan_dose(
        case, spec, use_stored=use_stored, accept_estimated_mu=accept_estimated_mu)
    out = Path(out_dir)
    if not with_ct and len(case.image_instance_uids) != case.ct.shape[0]:
        raise InputError("the case has no CT slice UIDs to reference (it was not imported "
                         "from DICOM); pass --with-ct to write the CT series as well")
    ensure_uids(case)
    ensure_study_date(case)
    identity = identity_of(case)
    ct_files = 0
    with dicom_output(out, force=force) as staging:
        if with_ct:
            case.image_instance_uids = write_image_series(
                case.ct, staging, identity, series_instance_uid=case.series_instance_uid,
                modality=case.modality, instance_uids=case.image_instance_uids or None,
                series_description="IORT planning CT", deidentifier=deidentifier)
            ct_files = len(case.image_instance_uids)
        struct_uid = new_uid()
        write_rtstruct(case, staging / "RS.dcm", deidentifier=deidentifier,
                       sop_instance_uid=struct_uid, series_number=2)
        files = write_plan_and_dose(staging, spec, mu, source_dose, case.ct, identity,
                                    spacing_mm=spacing_mm, structure_set_uid=struct_uid,
                                    plan_series_number=3, dose_series_number=4,
                                    mu_estimated=mu_estimated, deidentifier=deidentifier)
    log.info("exported a plan to %s (%.1f MU)", out, mu)
    return ExportResult(out_dir=out, rtstruct=out / "RS.dcm", rtplan=out / files.rtplan.name,
                        rtdose=out / files.rtdose.name, ct_files=ct_files, mu=mu,
                        dose_max_gy=float(files.dose.array.max()),
                        reference_point_lps=files.reference_point_lps,
                        anonymised=deidentifier is not None, dose_computed=not use_stored)
