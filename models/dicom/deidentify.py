"""De-identification of the DICOM this program writes: PS3.15 Annex E, Basic Profile.

:class:`Deidentifier` applies the Basic Application Level Confidentiality Profile (DICOM
PS3.15 E.1.1, Table E.1-1) with the options below to every dataset before it is written
(:func:`models.dicom.common.write_dataset`), so an anonymised export never touches the
disk with an identifier in it. The attribute list is data, :data:`PROFILE` (keyword ->
Table E.1-1 action code); the rules for what the table does not name follow it.

Action codes (PS3.15 Table E.1-1)
    ``D`` replace with a dummy value; ``Z`` replace with a zero-length value; ``X``
    remove; ``K`` keep; ``C`` clean (keep only a value known not to identify, else a
    dummy); ``U`` replace the UID with another, consistently. Combined codes (``X/Z``,
    ``X/D``, ``Z/D``, ``X/Z/D``, ``X/Z/U*``) let the de-identifier pick per IOD; here
    ``X/Z`` and ``X/Z/D`` and ``Z/D`` give ``Z`` (valid for Type 2 and 3), ``X/D`` gives
    ``X``, and ``X/Z/U*`` (a reference sequence) keeps the items with their UIDs replaced.

Options implemented (in DeidentificationMethodCodeSequence, CID 7050)
    * 113100 Basic Application Confidentiality Profile.
    * 113105 Clean Descriptors Option, for the three short labels that carry the data's
      meaning: ROI Name (structure names: CTV, BOWEL, FID1), Structure Set Label and RT
      Plan Label (which says "ESTIMATED MU" when it must). A label is kept only when it is
      short plain text (letters, digits, space, ``_-+.%()/``, at most 64 characters) and
      holds none of the dataset's identifying strings (any part of a person name, the
      patient ID, accession, birth date, institution); otherwise it becomes a dummy.
      Every other description (Study, Series, Structure Set and RT Plan descriptions and
      names) is removed, as the Basic Profile says.
    * 113107 Retain Longitudinal Temporal Information Modified Dates Option: every date
      (DA) is shifted back by a per-patient keyed number of whole days (1 to 3650, from
      the HMAC of the original Patient ID), so intervals between one patient's studies
      survive and the calendar dates do not; the Patient's Birth Date is emptied. Times of
      day (TM) and date-times (DT) are not retained: the Basic Profile action applies.
      Longitudinal Temporal Information Modified (0028,0303) is MODIFIED.
    * 113109 Retain Device Identity Option, for the Treatment Machine Name only (the beam
      data set the plan was computed on); other device identifiers follow the profile.

UIDs
    Every UID that is not a DICOM-defined one (SOP classes, transfer syntaxes, coding
    schemes: the ``1.2.840.10008.`` root) becomes ``2.25.<n>`` where ``n`` is 128 bits of
    the keyed HMAC of the original UID, formatted as an RFC 9562 version-8 UUID (PS3.5
    B.2). The same original always maps to the same new UID under one key, so the CT,
    RTSTRUCT, RTPLAN and RTDOSE of one export -- and of separate exports with the same
    key -- still reference each other (Study, Series, SOP Instance, Frame of Reference and
    every Referenced* UID, the file meta's Media Storage SOP Instance UID too).

Patient identity
    Patient ID becomes the keyed pseudonym (:meth:`models.base.pseudonyms.SiteKey.pseudonym`,
    ``ANON-<16 hex>``) and Patient's Name the same digits as ``ANON^<16 hex>`` (a valid
    Family^Given name); Patient Identity Removed (0012,0062)
    is YES and De-identification Method (0012,0063) names the profile and options.

Beyond the table
    Private attributes (odd groups), curves (50xx) and overlays (60xx) are removed;
    any person name (PN) the table does not name is emptied; any date, time or date-time
    it does not name is shifted or removed as above.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag

from models.base.pseudonyms import SiteKey

#: Table E.1-1 action of each attribute this program may write or import, by keyword.
#: ``C`` marks an attribute cleaned under an option (dates: 113107, labels: 113105) and
#: ``K`` one kept under 113109; the comment gives the Basic Profile code it replaces.
PROFILE: dict[str, str] = {
    # Patient (C.7.1.1) and its relatives
    "PatientName": "Z", "PatientID": "Z", "PatientBirthDate": "Z", "PatientSex": "Z",
    "PatientBirthTime": "X", "PatientAge": "X", "PatientSize": "X", "PatientWeight": "X",
    "PatientAddress": "X", "PatientComments": "X", "PatientTelephoneNumbers": "X",
    "PatientMotherBirthName": "X", "PatientBirthName": "X", "OtherPatientIDs": "X",
    "OtherPatientNames": "X", "OtherPatientIDsSequence": "X", "IssuerOfPatientID": "X",
    "MedicalRecordLocator": "X", "EthnicGroup": "X", "Occupation": "X",
    "AdditionalPatientHistory": "X", "MedicalAlerts": "X", "Allergies": "X",
    "PregnancyStatus": "X", "SmokingStatus": "X", "PatientReligiousPreference": "X",
    "ResponsiblePerson": "X", "ResponsibleOrganization": "X", "CountryOfResidence": "X",
    "RegionOfResidence": "X", "MilitaryRank": "X", "BranchOfService": "X",
    "ReferencedPatientSequence": "X", "PatientSexNeutered": "Z",
    # General Study (C.7.2.1)
    "StudyDate": "C",            # Z; shifted (113107)
    "StudyTime": "Z", "StudyID": "Z", "AccessionNumber": "Z",
    "ReferringPhysicianName": "Z", "ReferringPhysicianAddress": "X",
    "ReferringPhysicianTelephoneNumbers": "X", "ReferringPhysicianIdentificationSequence": "X",
    "StudyDescription": "X", "PhysiciansOfRecord": "X",
    "PhysiciansOfRecordIdentificationSequence": "X", "NameOfPhysiciansReadingStudy": "X",
    "PhysiciansReadingStudyIdentificationSequence": "X", "ConsultingPhysicianName": "Z",
    "AdmittingDiagnosesDescription": "X", "AdmissionID": "X", "StudyComments": "X",
    "ReasonForStudy": "X", "RequestingPhysician": "X", "RequestingService": "X",
    "RequestedProcedureDescription": "Z", "ReferencedStudySequence": "X/Z",
    "RequestAttributesSequence": "X",
    # General Series (C.7.3.1), equipment (C.7.5.1), acquisition
    "SeriesDate": "C",           # X/D; shifted (113107)
    "SeriesTime": "X", "SeriesDescription": "X", "ProtocolName": "X",
    "OperatorsName": "Z",        # X/Z/D
    "OperatorIdentificationSequence": "X", "PerformingPhysicianName": "X",
    "PerformingPhysicianIdentificationSequence": "X",
    "PerformedProcedureStepDescription": "X", "PerformedProcedureStepID": "X",
    "PerformedProcedureStepStartDate": "X", "PerformedProcedureStepStartTime": "X",
    "PerformedStationName": "X", "PerformedLocation": "X",
    "ReferencedPerformedProcedureStepSequence": "Z",   # X/Z/D
    "InstitutionName": "Z", "InstitutionAddress": "X", "InstitutionalDepartmentName": "X",
    "InstitutionCodeSequence": "Z", "StationName": "Z",   # X/Z/D
    "DeviceSerialNumber": "Z", "DeviceUID": "U", "DetectorID": "X", "GantryID": "X",
    "GeneratorID": "X", "DateOfLastCalibration": "X", "TimeOfLastCalibration": "X",
    "AcquisitionDate": "C",      # X/Z; shifted (113107)
    "AcquisitionTime": "Z", "AcquisitionDateTime": "Z", "AcquisitionComments": "X",
    "AcquisitionDeviceProcessingDescription": "X", "ContentDate": "C",   # Z/D; shifted
    "ContentTime": "Z", "InstanceCreationDate": "C",   # X/D; shifted (113107)
    "InstanceCreationTime": "Z", "InstanceCreatorUID": "U", "ImageComments": "X",
    "DerivationDescription": "X", "ContrastBolusAgent": "Z", "IconImageSequence": "X",
    "FrameComments": "X", "IdentifyingComments": "X", "TextComments": "X",
    "ReferencedImageSequence": "X/Z/U*", "SourceImageSequence": "X/Z/U*",
    # UIDs (U)
    "StudyInstanceUID": "U", "SeriesInstanceUID": "U", "SOPInstanceUID": "U",
    "FrameOfReferenceUID": "U", "ReferencedSOPInstanceUID": "U",
    "ReferencedFrameOfReferenceUID": "U", "RelatedFrameOfReferenceUID": "U",
    "SynchronizationFrameOfReferenceUID": "U", "MediaStorageSOPInstanceUID": "U",
    "ReferencedSOPInstanceUIDInFile": "U", "DoseReferenceUID": "U",
    "ReferencedDoseReferenceUID": "U", "IrradiationEventUID": "U",
    "ConcatenationUID": "U", "DimensionOrganizationUID": "U", "UID": "U",
    "PatientSetupUID": "U", "TreatmentSessionUID": "U", "AcquisitionUID": "U",
    # RT Structure Set (C.8.8.5), ROIs
    "StructureSetLabel": "C",    # D; cleaned (113105)
    "StructureSetName": "X", "StructureSetDescription": "X",
    "StructureSetDate": "C",     # Z; shifted (113107)
    "StructureSetTime": "Z", "ROIName": "C",   # Z; cleaned (113105)
    "ROIDescription": "X", "ROIGenerationDescription": "X", "ROIInterpreter": "Z",
    "ROIObservationLabel": "X", "ROIObservationDescription": "X",
    # RT Plan (C.8.8.9 ...)
    "RTPlanLabel": "C",          # D; cleaned (113105)
    "RTPlanName": "X", "RTPlanDescription": "X", "RTPlanDate": "C",   # X/D; shifted
    # RT Plan Time: X/D in the table; Z here, as the RT General Plan module needs it (Type 2)
    "RTPlanTime": "Z", "PrescriptionDescription": "X", "DoseReferenceDescription": "X",
    "FractionGroupDescription": "X", "BeamDescription": "X", "BolusDescription": "X",
    "FixationDeviceDescription": "X", "ShieldingDeviceDescription": "X",
    "SetupTechniqueDescription": "X", "TreatmentSites": "X", "TreatmentSite": "X",
    "TreatmentMachineName": "K",   # X/Z; kept (113109)
    "ReviewDate": "Z", "ReviewTime": "Z", "ReviewerName": "Z",
    # Requests, visits, procedure steps
    "RequestedProcedureID": "X", "RequestedProcedureComments": "X",
    "ScheduledProcedureStepDescription": "X", "ScheduledProcedureStepID": "X",
    "ScheduledPerformingPhysicianName": "X", "PlacerOrderNumberImagingServiceRequest": "Z",
    "FillerOrderNumberImagingServiceRequest": "Z", "ServiceEpisodeID": "X",
    "ServiceEpisodeDescription": "X", "CurrentPatientLocation": "X", "VisitComments": "X",
    "PersonName": "D", "VerifyingObserverName": "D", "ContentCreatorName": "Z",
    "ContentSequence": "X", "DigitalSignaturesSequence": "X", "DataSetTrailingPadding": "X",
}

#: Codes of CID 7050 recorded in DeidentificationMethodCodeSequence, in order.
METHOD_CODES: tuple[tuple[str, str], ...] = (
    ("113100", "Basic Application Confidentiality Profile"),
    ("113105", "Clean Descriptors Option"),
    ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
    ("113109", "Retain Device Identity Option"),
)
#: DeidentificationMethod (0012,0063) values (LO, at most 64 characters each).
METHOD_TEXT: tuple[str, ...] = (
    "DICOM PS3.15 E.1 Basic Application Confidentiality Profile",
    "Clean Descriptors: ROI Name, labels",
    "Modified Dates: keyed per-patient day shift; times removed",
    "Retain Device Identity: Treatment Machine Name only",
    "Keyed HMAC-SHA256 UIDs and pseudonyms (iort-guidance)",
)
#: Root of the UIDs DICOM itself defines (kept: SOP classes, transfer syntaxes...).
_DICOM_ROOT = "1.2.840.10008."
#: Days a date is shifted back: 1 ..= this, per patient.
MAX_SHIFT_DAYS = 3650
_CLEAN_LABEL = re.compile(r"[A-Za-z0-9 _+\-.%()/]{0,64}")
_DUMMY_TEXT = "REMOVED"
_TAGS: dict[int, str] = {}
for _keyword, _action in PROFILE.items():
    _tag = tag_for_keyword(_keyword)
    if _tag is None:  # pragma: no cover - a typo in the table
        raise RuntimeError(f"PROFILE: unknown DICOM keyword {_keyword!r}")
    _TAGS[int(_tag)] = _action


def _bare(action: str) -> str:
    """The one action taken for a (possibly combined) Table E.1-1 code."""
    return {"X/Z": "Z", "X/Z/D": "Z", "Z/D": "Z", "X/D": "X"}.get(action, action)


@dataclass
class Deidentifier:
    """Applies :data:`PROFILE` under one site key (see the module docstring).

    Parameters
    ----------
    key : SiteKey
        The secret behind pseudonyms, UIDs and date shifts.

    Examples
    --------
    >>> from pydicom.dataset import Dataset
    >>> ds = Dataset(); ds.PatientID = "MRN-7"; ds.StudyDate = "20260101"
    >>> ds.StudyInstanceUID = "1.2.3.4"
    >>> Deidentifier(SiteKey(b"k" * 32)).apply(ds)
    >>> ds.PatientID.startswith("ANON-"), ds.StudyInstanceUID.startswith("2.25.")
    (True, True)
    """

    key: SiteKey
    _uids: dict[str, str] = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ mappings
    def uid(self, original: str) -> str:
        """The replacement of a UID: ``2.25.`` + 128 keyed bits as a version-8 UUID."""
        original = str(original).strip().rstrip("\x00")
        if not original or original.startswith(_DICOM_ROOT):
            return original
        if original not in self._uids:
            raw = bytearray(self.key.digest("uid", original)[:16])
            raw[6] = (raw[6] & 0x0F) | 0x80      # version 8 (RFC 9562)
            raw[8] = (raw[8] & 0x3F) | 0x80      # variant 10
            self._uids[original] = "2.25." + str(int.from_bytes(raw, "big"))
        return self._uids[original]

    def pseudonym(self, patient_id: str) -> str:
        """Patient ID / name replacement (:meth:`SiteKey.pseudonym`)."""
        return self.key.pseudonym(patient_id)

    def shift_days(self, patient_id: str) -> int:
        """Days every date of this patient is moved back (1 to :data:`MAX_SHIFT_DAYS`)."""
        value = int.from_bytes(self.key.digest("date-offset", patient_id)[:8], "big")
        return 1 + value % MAX_SHIFT_DAYS

    # ------------------------------------------------------------------ applying
    def apply(self, ds: Dataset) -> None:
        """De-identify ``ds`` in place (file meta included) and mark it so."""
        patient_id = str(ds.get("PatientID", "") or "")
        context = _Context(shift_days=self.shift_days(patient_id),
                           tokens=_identifying_tokens(ds))
        self._walk(ds, context)
        meta = getattr(ds, "file_meta", None)
        if meta is not None and "MediaStorageSOPInstanceUID" in meta:
            meta.MediaStorageSOPInstanceUID = self.uid(meta.MediaStorageSOPInstanceUID)
        if "PatientID" in ds or "PatientName" in ds:
            ds.PatientID = self.pseudonym(patient_id)
            ds.PatientName = "ANON^" + ds.PatientID.removeprefix("ANON-")   # Family^Given
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = list(METHOD_TEXT)
        ds.DeidentificationMethodCodeSequence = Sequence([
            _code(value, meaning) for value, meaning in METHOD_CODES])
        ds.LongitudinalTemporalInformationModified = "MODIFIED"

    def _walk(self, ds: Dataset, context: _Context) -> None:
        for elem in list(ds):
            tag = int(elem.tag)
            if BaseTag(tag).is_private or (tag >> 16) & 0xFF00 in (0x5000, 0x6000):
                del ds[elem.tag]
                continue
            action = _TAGS.get(tag)
            if action is None:
                action = _default_action(elem.VR)
            self._act(ds, elem, _bare(action), context)

    def _act(self, ds: Dataset, elem: DataElement, action: str, context: _Context) -> None:
        if action == "X":
            del ds[elem.tag]
        elif action == "Z":
            elem.value = Sequence() if elem.VR == "SQ" else ""
        elif action == "D":
            elem.value = Sequence() if elem.VR == "SQ" else _dummy(elem.VR)
        elif action == "U" and elem.VR == "UI":
            elem.value = _map_values(elem.value, self.uid)
        elif action == "C" and elem.VR == "DA":
            elem.value = _map_values(elem.value, lambda v: _shift_date(v, context.shift_days))
        elif action == "C":
            elem.value = _map_values(elem.value, lambda v: _clean_label(v, context.tokens))
            if elem.keyword == "ROIName" and elem.value == _DUMMY_TEXT:   # names stay unique
                elem.value = f"ROI{ds.get('ROINumber', '')}"
        elif elem.VR == "SQ":   # K, X/Z/U*, or a sequence the table does not name
            for item in elem.value:
                self._walk(item, context)


@dataclass(frozen=True)
class _Context:
    shift_days: int
    tokens: tuple[str, ...]


def _default_action(vr: str) -> str:
    """Action for an attribute :data:`PROFILE` does not name, by its VR."""
    return {"UI": "U", "PN": "Z", "DA": "C", "TM": "X", "DT": "X"}.get(vr, "K")


def _map_values(value: object, func: Callable[[str], str]) -> object:
    if value is None or value == "":
        return value
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return [func(str(v)) for v in value]
    return func(str(value))


def _shift_date(value: str, days: int) -> str:
    """A DA shifted back by ``days``; an unparseable date is removed (empty)."""
    try:
        day = _dt.datetime.strptime(value.strip()[:8], "%Y%m%d").date()
    except ValueError:
        return ""
    return (day - _dt.timedelta(days=days)).strftime("%Y%m%d")


def _clean_label(value: str, tokens: Iterable[str]) -> str:
    """``value`` when it is short plain text free of identifying strings, else a dummy."""
    text = value.strip()
    lowered = text.lower()
    if _CLEAN_LABEL.fullmatch(text) and not any(t in lowered for t in tokens):
        return text
    return _DUMMY_TEXT


def _dummy(vr: str) -> str:
    return {"PN": "ANONYMOUS", "DA": "19000101", "TM": "000000", "DT": "19000101000000",
            "CS": "", "AS": "000Y"}.get(vr, _DUMMY_TEXT)


def _identifying_tokens(ds: Dataset) -> tuple[str, ...]:
    """Lower-case strings (at least 3 characters) that identify someone in ``ds``: parts
    of every person name, the patient's IDs, accession, birth date, institution."""
    found: set[str] = set()

    def visit(item: Dataset) -> None:
        for elem in item:
            if elem.VR == "SQ":
                for sub in elem.value:
                    visit(sub)
            elif elem.VR == "PN" or elem.keyword in _TOKEN_KEYWORDS:
                for value in (elem.value if elem.VM > 1 else [elem.value]):
                    for part in re.split(r"[\^=\s,]+", str(value or "")):
                        if len(part) >= 3:
                            found.add(part.lower())

    visit(ds)
    return tuple(sorted(found))


_TOKEN_KEYWORDS = frozenset({"PatientID", "OtherPatientIDs", "AccessionNumber",
                             "PatientBirthDate", "InstitutionName", "StudyID",
                             "MedicalRecordLocator", "AdmissionID"})


def _code(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = "DCM"
    item.CodeMeaning = meaning
    return item
