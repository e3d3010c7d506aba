"""RT Plan (DICOM PS3.3 A.20) for one electron IORT beam: writer and reader.

What is written
---------------
* RT General Plan: label, date/time, ``RTPlanGeometry PATIENT`` referencing the RT Structure
  Set when one is given (else ``TREATMENT_DEVICE``).
* RT Prescription: one ``DoseReferenceSequence`` item of structure type ``COORDINATES`` at
  the reference point (patient LPS mm), ``TARGET``, ``TargetPrescriptionDose`` = the
  prescription; its description records the isodose it is prescribed to
  (``"prescribed to 90 % isodose"``) -- DICOM has no attribute for that level.
* RT Fraction Scheme: fractions planned, the beam's MU (``BeamMeterset``) and dose.
* RT Beams: one ``STATIC`` ``ELECTRON`` beam on ``TreatmentMachineName``, ``PrimaryDosimeter
  Unit MU``, ``NominalBeamEnergy`` (MeV), an ``ApplicatorSequence`` item of type
  ``INTRAOPERATIVE`` with the applicator id, an ``ApplicatorGeometrySequence`` (circular
  aperture, opening = diameter mm) and the bevel in ``ApplicatorDescription``
  (``"IORT applicator, diameter 60 mm, bevel 30 deg"``), and two control points.
* RT Patient Setup: HFS (the orientation conventions below assume it).

Beam geometry (IEC 61217, head-first supine)
--------------------------------------------
The applicator pose ``patient_from_applicator`` (origin at the centre of the distal end
face, +z along the beam into tissue) is written as gantry, patient support (couch) and
beam limiting device (collimator) angles plus ``IsocenterPosition`` = the end-face centre,
with ``SourceToSurfaceDistance`` = the source-axis distance (the applicator end touches the
surface at the isocentre, as for a docked IORT applicator). With HFS the IEC fixed axes in
LPS are ``X_f = +x`` (patient left), ``Y_f = +z`` (towards the gantry), ``Z_f = -y`` (up);
the beam limiting device axes are ``R_z(couch)^T R_y(gantry) R_z(collimator)`` in the
fixed frame, and the applicator frame is the beam limiting device frame turned half a
turn about its x axis (+z into the patient). The reader rebuilds the pose from these, so
a plan round-trips exactly (couch kept within [-90, 90] degrees).
Reference: IEC 61217:2011 Radiotherapy equipment -- coordinates, movements and scales.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import RTPlanStorage, RTStructureSetStorage

from models.base.errors import InputError
from models.base.validation import as_array, as_positive, as_transform
from models.dicom.common import MANUFACTURER, Identity, write_dataset
from models.dicom.rtcommon import (
    Instance,
    dicom_float,
    dicom_floats,
    ds_value,
    ds_values,
    instance_from_dataset,
    reading,
    rt_dataset,
    rt_object,
)

if TYPE_CHECKING:  # pragma: no cover
    from models.dicom.deidentify import Deidentifier

logger = logging.getLogger(__name__)

_ISODOSE_RE = re.compile(r"([0-9]+(?:\.[0-9]*)?)\s*%\s*isodose", re.IGNORECASE)
_BEVEL_RE = re.compile(r"bevel\s*(-?[0-9]+(?:\.[0-9]*)?)\s*deg", re.IGNORECASE)
_DIAMETER_RE = re.compile(r"diameter\s*([0-9]+(?:\.[0-9]*)?)\s*mm", re.IGNORECASE)

#: LPS -> IEC fixed frame at couch 0 for a head-first supine patient (rows: X_f, Y_f, Z_f).
_FIXED_FROM_LPS = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
#: Applicator axes in the beam limiting device frame: +z_applicator = -Z_b (into tissue).
_BLD_FROM_APPLICATOR = np.diag([1.0, -1.0, -1.0])


@dataclass(frozen=True, eq=False)
class ElectronPlan:
    """One electron IORT beam and its prescription.

    Attributes
    ----------
    machine : str
        TreatmentMachineName.
    energy_mev : float
        Nominal beam energy (MeV).
    applicator_id : str
        Applicator identifier (catalogue id).
    applicator_diameter_mm : float
        Inner diameter of the circular applicator (mm).
    bevel_deg : float
        Bevel angle of the applicator end (0 = flat).
    mu : float
        Monitor units of the beam.
    prescription_gy : float
        Dose prescribed at the ``isodose_percent`` isodose (Gy, all fractions).
    reference_point_lps : numpy.ndarray
        (3,) dose reference point, patient LPS mm.
    patient_from_applicator : numpy.ndarray
        4x4 rigid pose of the applicator (origin at the end-face centre, +z into tissue).
    isodose_percent : float
        Isodose the prescription is delivered to (default 90).
    fractions : int
        Number of fractions (1 for IORT).
    source_axis_distance_mm : float
        Source-axis distance of the machine (mm).
    label : str
        RTPlanLabel.
    beam_name : str
        BeamName.
    """

    machine: str
    energy_mev: float
    applicator_id: str
    applicator_diameter_mm: float
    bevel_deg: float
    mu: float
    prescription_gy: float
    reference_point_lps: np.ndarray
    patient_from_applicator: np.ndarray
    isodose_percent: float = 90.0
    fractions: int = 1
    source_axis_distance_mm: float = 1000.0
    label: str = "IORT"
    beam_name: str = "IORT electrons"

    def __post_init__(self) -> None:
        for name in ("energy_mev", "applicator_diameter_mm", "prescription_gy",
                     "isodose_percent", "source_axis_distance_mm"):
            object.__setattr__(self, name, as_positive(getattr(self, name), name=name))
        object.__setattr__(self, "mu", as_positive(self.mu, name="mu", allow_zero=True))
        bevel = float(self.bevel_deg)
        if not 0.0 <= bevel < 90.0:
            raise InputError(f"bevel_deg must be in [0, 90), got {self.bevel_deg}")
        object.__setattr__(self, "bevel_deg", bevel)
        object.__setattr__(self, "reference_point_lps", as_array(
            self.reference_point_lps, name="reference_point_lps", shape=(3,)))
        object.__setattr__(self, "patient_from_applicator", as_transform(
            self.patient_from_applicator, name="patient_from_applicator", rigid=True))
        if int(self.fractions) < 1:
            raise InputError(f"fractions must be >= 1, got {self.fractions}")
        object.__setattr__(self, "fractions", int(self.fractions))
        if not self.machine:
            raise InputError("machine must not be empty")
        if not self.applicator_id:
            raise InputError("applicator_id must not be empty")


@dataclass(frozen=True)
class BeamAngles:
    """IEC 61217 angles in degrees, each in [0, 360)."""

    gantry_deg: float
    couch_deg: float
    collimator_deg: float


@dataclass(frozen=True, eq=False)
class RtBeam:
    """One beam of any RT Plan, as read (fields absent in the file are empty/NaN)."""

    number: int
    name: str
    radiation_type: str
    machine: str
    energy_mev: float
    mu: float
    angles: BeamAngles
    isocenter_lps: np.ndarray
    source_axis_distance_mm: float
    applicator_id: str = ""
    applicator_type: str = ""
    applicator_diameter_mm: float = math.nan
    bevel_deg: float = math.nan


@dataclass(frozen=True, eq=False)
class DoseReference:
    """One DoseReferenceSequence item."""

    number: int
    structure_type: str
    reference_type: str
    description: str
    point_lps: np.ndarray | None
    prescription_gy: float


@dataclass(frozen=True, eq=False)
class RtPlan:
    """An RT Plan object read back."""

    label: str
    instance: Instance
    beams: list[RtBeam] = field(default_factory=list)
    dose_references: list[DoseReference] = field(default_factory=list)
    fractions: int = 1
    referenced_structure_set_uid: str = ""
    patient_position: str = ""

    def electron_plan(self) -> ElectronPlan:
        """The single electron IORT beam of this plan as an :class:`ElectronPlan`.

        Raises
        ------
        InputError
            The plan does not hold exactly one electron beam with an applicator, or lacks
            a target dose reference.
        """
        electrons = [b for b in self.beams if b.radiation_type == "ELECTRON"]
        if len(electrons) != 1:
            raise InputError(f"RT Plan {self.label!r}: expected one ELECTRON beam, found "
                             f"{len(electrons)} (of {len(self.beams)} beams)")
        beam = electrons[0]
        if not beam.applicator_id or not math.isfinite(beam.applicator_diameter_mm):
            raise InputError(f"RT Plan {self.label!r}: beam {beam.name!r} has no applicator "
                             "with a diameter (ApplicatorSequence)")
        targets = [r for r in self.dose_references
                   if r.reference_type == "TARGET" and r.point_lps is not None
                   and math.isfinite(r.prescription_gy)]
        if not targets:
            raise InputError(f"RT Plan {self.label!r}: no TARGET dose reference point with a "
                             "TargetPrescriptionDose")
        match = _ISODOSE_RE.search(targets[0].description)
        isodose = float(match.group(1)) if match else 90.0
        pose = patient_from_applicator_from_angles(beam.angles, beam.isocenter_lps)
        try:
            return ElectronPlan(
                machine=beam.machine, energy_mev=beam.energy_mev,
                applicator_id=beam.applicator_id,
                applicator_diameter_mm=beam.applicator_diameter_mm,
                bevel_deg=0.0 if math.isnan(beam.bevel_deg) else beam.bevel_deg,
                mu=beam.mu, prescription_gy=targets[0].prescription_gy,
                reference_point_lps=targets[0].point_lps, patient_from_applicator=pose,
                isodose_percent=isodose, fractions=self.fractions,
                source_axis_distance_mm=beam.source_axis_distance_mm, label=self.label,
                beam_name=beam.name)
        except (TypeError, ValueError) as exc:
            raise InputError(f"RT Plan {self.label!r}: {exc}") from exc


def _rot_y(deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _rot_z(deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _wrap_deg(deg: float) -> float:
    out = round(deg % 360.0, 9)
    return 0.0 if out == 360.0 else out


def angles_from_pose(patient_from_applicator: np.ndarray) -> BeamAngles:
    """IEC 61217 gantry/couch/collimator angles of an applicator pose (HFS patient).

    The couch angle is chosen in [-90, 90] degrees (reported modulo 360).
    """
    pose = as_transform(patient_from_applicator, name="patient_from_applicator", rigid=True)
    bld_in_lps = pose[:3, :3] @ _BLD_FROM_APPLICATOR  # columns X_b, Y_b, Z_b in LPS
    beam_fixed0 = _FIXED_FROM_LPS @ (-bld_in_lps[:, 2])  # source -> patient, couch 0
    vx, vy, _ = beam_fixed0
    if math.hypot(vx, vy) < 1e-12:
        couch = 0.0
    else:
        couch = math.degrees(math.atan2(-vy, vx))
        if couch > 90.0:
            couch -= 180.0
        elif couch < -90.0:
            couch += 180.0
    # fixed-frame axes of the beam limiting device: R_y(g) R_z(c) = R_z(couch) F R_lb
    m = _rot_z(couch) @ _FIXED_FROM_LPS @ bld_in_lps
    gantry = math.degrees(math.atan2(m[0, 2], m[2, 2]))
    rest = _rot_y(gantry).T @ m
    collimator = math.degrees(math.atan2(rest[1, 0], rest[0, 0]))
    return BeamAngles(_wrap_deg(gantry), _wrap_deg(couch), _wrap_deg(collimator))


def patient_from_applicator_from_angles(angles: BeamAngles,
                                        isocenter_lps: np.ndarray) -> np.ndarray:
    """Inverse of :func:`angles_from_pose`: 4x4 pose with its origin at the isocentre."""
    m = _rot_z(angles.couch_deg).T @ _rot_y(angles.gantry_deg) @ _rot_z(angles.collimator_deg)
    pose = np.eye(4)
    pose[:3, :3] = _FIXED_FROM_LPS.T @ m @ _BLD_FROM_APPLICATOR
    pose[:3, 3] = as_array(isocenter_lps, name="isocenter_lps", shape=(3,))
    return pose


def plan_dataset(plan: ElectronPlan, identity: Identity, *, structure_set_uid: str = "",
                 series_instance_uid: str = "", sop_instance_uid: str = "",
                 series_number: int = 1) -> Dataset:
    """Build an RT Plan dataset (with file meta) for one electron IORT beam.

    Parameters
    ----------
    plan : ElectronPlan
        Beam, applicator, MU, prescription and pose.
    identity : Identity
        Patient, study and the CT's Frame of Reference
        (:func:`models.dicom.common.identity_of`).
    structure_set_uid : str
        SOP Instance UID of the RT Structure Set the plan refers to ("" for none).
    series_instance_uid, sop_instance_uid : str
        UIDs of the new object (generated when empty).
    series_number : int
        SeriesNumber of the new RT series.
    """
    if not isinstance(plan, ElectronPlan):
        raise TypeError(f"plan must be an ElectronPlan, got {type(plan).__name__}")
    ds = rt_dataset(identity, sop_class_uid=RTPlanStorage, modality="RTPLAN",
                    description=f"IORT plan {plan.label}",
                    series_instance_uid=series_instance_uid,
                    sop_instance_uid=sop_instance_uid, series_number=series_number)
    now_date, now_time = ds.InstanceCreationDate, ds.InstanceCreationTime
    ds.RTPlanLabel = plan.label[:16]
    ds.RTPlanName = plan.label[:64]
    ds.RTPlanDate = now_date
    ds.RTPlanTime = now_time
    if structure_set_uid:
        ds.RTPlanGeometry = "PATIENT"
        ref = Dataset()
        ref.ReferencedSOPClassUID = RTStructureSetStorage
        ref.ReferencedSOPInstanceUID = structure_set_uid
        ds.ReferencedStructureSetSequence = Sequence([ref])
    else:
        ds.RTPlanGeometry = "TREATMENT_DEVICE"
    ds.PrescriptionDescription = (f"{plan.prescription_gy:g} Gy to the "
                                  f"{plan.isodose_percent:g} % isodose, electrons "
                                  f"{plan.energy_mev:g} MeV")[:1024]
    dose_ref = Dataset()
    dose_ref.DoseReferenceNumber = 1
    dose_ref.DoseReferenceStructureType = "COORDINATES"
    dose_ref.DoseReferenceDescription = f"prescribed to {plan.isodose_percent:g} % isodose"
    dose_ref.DoseReferencePointCoordinates = ds_values(plan.reference_point_lps)
    dose_ref.DoseReferenceType = "TARGET"
    dose_ref.TargetPrescriptionDose = ds_value(plan.prescription_gy)
    ds.DoseReferenceSequence = Sequence([dose_ref])
    ds.FractionGroupSequence = Sequence([_fraction_group(plan)])
    ds.BeamSequence = Sequence([_beam(plan)])
    setup = Dataset()
    setup.PatientSetupNumber = 1
    setup.PatientPosition = "HFS"
    ds.PatientSetupSequence = Sequence([setup])
    ds.ApprovalStatus = "UNAPPROVED"
    return ds


def _fraction_group(plan: ElectronPlan) -> Dataset:
    group = Dataset()
    group.FractionGroupNumber = 1
    group.NumberOfFractionsPlanned = plan.fractions
    group.NumberOfBeams = 1
    group.NumberOfBrachyApplicationSetups = 0
    ref_beam = Dataset()
    ref_beam.ReferencedBeamNumber = 1
    ref_beam.BeamDose = ds_value(plan.prescription_gy / plan.fractions)
    ref_beam.BeamMeterset = ds_value(plan.mu)
    group.ReferencedBeamSequence = Sequence([ref_beam])
    ref_dose = Dataset()
    ref_dose.ReferencedDoseReferenceNumber = 1
    group.ReferencedDoseReferenceSequence = Sequence([ref_dose])
    return group


def _beam(plan: ElectronPlan) -> Dataset:
    angles = angles_from_pose(plan.patient_from_applicator)
    radius = plan.applicator_diameter_mm / 2.0
    beam = Dataset()
    beam.Manufacturer = MANUFACTURER
    beam.TreatmentMachineName = plan.machine[:16]
    beam.PrimaryDosimeterUnit = "MU"
    beam.SourceAxisDistance = ds_value(plan.source_axis_distance_mm)
    devices = []
    for kind in ("X", "Y"):
        device = Dataset()
        device.RTBeamLimitingDeviceType = kind
        device.NumberOfLeafJawPairs = 1
        devices.append(device)
    beam.BeamLimitingDeviceSequence = Sequence(devices)
    beam.BeamNumber = 1
    beam.BeamName = plan.beam_name[:64]
    beam.BeamDescription = (f"IORT electron beam {plan.energy_mev:g} MeV, applicator "
                            f"{plan.applicator_id}")
    beam.BeamType = "STATIC"
    beam.RadiationType = "ELECTRON"
    beam.TreatmentDeliveryType = "TREATMENT"
    beam.NumberOfWedges = 0
    beam.NumberOfCompensators = 0
    beam.NumberOfBoli = 0
    beam.NumberOfBlocks = 0
    applicator = Dataset()
    applicator.ApplicatorID = plan.applicator_id[:16]
    applicator.ApplicatorType = "INTRAOPERATIVE"
    applicator.ApplicatorDescription = (f"IORT applicator, diameter "
                                        f"{plan.applicator_diameter_mm:g} mm, bevel "
                                        f"{plan.bevel_deg:g} deg")
    geometry = Dataset()
    geometry.ApplicatorApertureShape = "SYM_CIRCULAR"
    geometry.ApplicatorOpening = float(plan.applicator_diameter_mm)
    applicator.ApplicatorGeometrySequence = Sequence([geometry])
    beam.ApplicatorSequence = Sequence([applicator])
    beam.FinalCumulativeMetersetWeight = "1"
    beam.NumberOfControlPoints = 2
    first = Dataset()
    first.ControlPointIndex = 0
    first.NominalBeamEnergy = ds_value(plan.energy_mev)
    positions = []
    for kind in ("X", "Y"):
        pos = Dataset()
        pos.RTBeamLimitingDeviceType = kind
        pos.LeafJawPositions = ds_values([-radius, radius])
        positions.append(pos)
    first.BeamLimitingDevicePositionSequence = Sequence(positions)
    first.GantryAngle = ds_value(angles.gantry_deg)
    first.GantryRotationDirection = "NONE"
    first.BeamLimitingDeviceAngle = ds_value(angles.collimator_deg)
    first.BeamLimitingDeviceRotationDirection = "NONE"
    first.PatientSupportAngle = ds_value(angles.couch_deg)
    first.PatientSupportRotationDirection = "NONE"
    first.TableTopEccentricAngle = "0"
    first.TableTopEccentricRotationDirection = "NONE"
    first.TableTopVerticalPosition = ""
    first.TableTopLongitudinalPosition = ""
    first.TableTopLateralPosition = ""
    first.IsocenterPosition = ds_values(plan.patient_from_applicator[:3, 3])
    first.SourceToSurfaceDistance = ds_value(plan.source_axis_distance_mm)
    first.CumulativeMetersetWeight = "0"
    last = Dataset()
    last.ControlPointIndex = 1
    last.CumulativeMetersetWeight = "1"
    beam.ControlPointSequence = Sequence([first, last])
    beam.ReferencedPatientSetupNumber = 1
    return beam


def write_rtplan(path: str | Path, plan: ElectronPlan, identity: Identity, *,
                 structure_set_uid: str = "", series_instance_uid: str = "",
                 sop_instance_uid: str = "", series_number: int = 1,
                 deidentifier: Deidentifier | None = None) -> Path:
    """Write an RT Plan file; see :func:`plan_dataset`. Returns the path written.

    With ``deidentifier`` the file is written de-identified
    (:class:`models.dicom.deidentify.Deidentifier`).
    """
    return write_dataset(plan_dataset(plan, identity, structure_set_uid=structure_set_uid,
                                      series_instance_uid=series_instance_uid,
                                      sop_instance_uid=sop_instance_uid,
                                      series_number=series_number), path,
                         deidentifier=deidentifier)


def read_rtplan(source: str | Path | Dataset) -> RtPlan:
    """Read any RT Plan (beams, dose references, fractions) from a file or dataset.

    Use :meth:`RtPlan.electron_plan` to get the IORT electron beam back.

    Raises
    ------
    InputError
        Not an RT Plan, or a malformed attribute; the message names file and attribute.
    """
    with reading(source, "RT Plan") as label:
        ds = rt_object(source, label, sop_class_uid=RTPlanStorage, modality="RTPLAN",
                       what="RT Plan")
        references = [_dose_reference(item, f"{label} DoseReferenceSequence[{n}]")
                      for n, item in enumerate(ds.get("DoseReferenceSequence") or [])]
        groups = ds.get("FractionGroupSequence") or []
        fractions = int(groups[0].get("NumberOfFractionsPlanned") or 1) if groups else 1
        meterset = {}
        for group in groups[:1]:
            for ref in group.get("ReferencedBeamSequence") or []:
                number = int(ref.get("ReferencedBeamNumber") or 0)
                mu = ref.get("BeamMeterset")
                meterset[number] = float(mu) if mu not in (None, "") else math.nan
        beams = [_read_beam(item, f"{label} BeamSequence[{n}]", meterset)
                 for n, item in enumerate(ds.get("BeamSequence") or [])]
        structure_refs = ds.get("ReferencedStructureSetSequence") or []
        setups = ds.get("PatientSetupSequence") or []
        return RtPlan(
            label=str(ds.get("RTPlanLabel", "") or ""), instance=instance_from_dataset(ds),
            beams=beams, dose_references=references, fractions=max(1, fractions),
            referenced_structure_set_uid=str(structure_refs[0].get(
                "ReferencedSOPInstanceUID", "")) if structure_refs else "",
            patient_position=str(setups[0].get("PatientPosition", "")) if setups else "")


def _dose_reference(item: Dataset, label: str) -> DoseReference:
    point = None
    if item.get("DoseReferencePointCoordinates") not in (None, ""):
        point = dicom_floats(item, "DoseReferencePointCoordinates", label, count=3)
    return DoseReference(
        number=int(item.get("DoseReferenceNumber") or 0),
        structure_type=str(item.get("DoseReferenceStructureType", "") or ""),
        reference_type=str(item.get("DoseReferenceType", "") or ""),
        description=str(item.get("DoseReferenceDescription", "") or ""),
        point_lps=point,
        prescription_gy=dicom_float(item, "TargetPrescriptionDose", label, default=math.nan))


def _read_beam(item: Dataset, label: str, meterset: dict[int, float]) -> RtBeam:
    number = int(item.get("BeamNumber") or 0)
    points = item.get("ControlPointSequence") or []
    if not points:
        raise InputError(f"{label}: ControlPointSequence is empty")
    first = points[0]
    angles = BeamAngles(
        gantry_deg=dicom_float(first, "GantryAngle", label, default=0.0),
        couch_deg=dicom_float(first, "PatientSupportAngle", label, default=0.0),
        collimator_deg=dicom_float(first, "BeamLimitingDeviceAngle", label, default=0.0))
    iso = (dicom_floats(first, "IsocenterPosition", label, count=3)
           if first.get("IsocenterPosition") not in (None, "") else np.zeros(3))
    applicator_id = applicator_type = ""
    diameter = bevel = math.nan
    applicators = item.get("ApplicatorSequence") or []
    if applicators:
        app = applicators[0]
        applicator_id = str(app.get("ApplicatorID", "") or "")
        applicator_type = str(app.get("ApplicatorType", "") or "")
        description = str(app.get("ApplicatorDescription", "") or "")
        for geometry in app.get("ApplicatorGeometrySequence") or []:
            if geometry.get("ApplicatorOpening") not in (None, ""):
                diameter = dicom_float(geometry, "ApplicatorOpening", label)
        if math.isnan(diameter) and (match := _DIAMETER_RE.search(description)):
            diameter = float(match.group(1))
        if match := _BEVEL_RE.search(description):
            bevel = float(match.group(1))
    return RtBeam(
        number=number, name=str(item.get("BeamName", "") or ""),
        radiation_type=str(item.get("RadiationType", "") or ""),
        machine=str(item.get("TreatmentMachineName", "") or ""),
        energy_mev=dicom_float(first, "NominalBeamEnergy", label, default=math.nan),
        mu=meterset.get(number, math.nan), angles=angles, isocenter_lps=iso,
        source_axis_distance_mm=dicom_float(item, "SourceAxisDistance", label,
                                            default=math.nan),
        applicator_id=applicator_id, applicator_type=applicator_type,
        applicator_diameter_mm=diameter, bevel_deg=bevel)
