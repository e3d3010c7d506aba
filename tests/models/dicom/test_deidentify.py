"""De-identification (PS3.15 Basic Profile): nothing identifying survives, references resolve,
pseudonyms are keyed."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from models.base.errors import InputError
from models.base.pseudonyms import SiteKey
from models.dicom.deidentify import MAX_SHIFT_DAYS, PROFILE, Deidentifier
from models.dicom.reader import read_case
from models.dicom.rt_export import export_case, resolve_plan
from models.dicom.rtstruct import read_rtstruct
from models.dicom.writer import write_case
from models.patient.phantom import make_phantom

SPACING_MM = (3.0, 3.0, 4.0)
MRN = "MRN-0047113"
NAME = "Smithson^Johanna^Q"
IDENTITY = {"patient_birth_date": "19580412", "patient_sex": "F", "study_id": "STU4471",
            "study_date": "20260317", "study_time": "081522", "accession_number": "ACC99812",
            "referring_physician_name": "Hartwell^Oscar",
            "study_description": "CT abdomen Smithson pre-IORT"}


def _identified_phantom():
    case = make_phantom(spacing_mm=SPACING_MM)
    case.patient_id, case.patient_name = MRN, NAME
    case.dicom_attributes.update(IDENTITY)
    return case


@pytest.fixture(scope="module")
def originals(tmp_path_factory) -> tuple[Path, dict]:
    """The phantom, carrying a patient's identity, written as DICOM (not anonymised)."""
    folder = tmp_path_factory.mktemp("orig") / "dicom"
    write_case(_identified_phantom(), folder, series_description="CT for Smithson")
    return folder, _strings_of(folder)


def _strings_of(folder: Path) -> dict[str, set[str]]:
    """Every UID, date and identifying text of the files in ``folder``."""
    found: dict[str, set[str]] = {"uid": set(), "date": set(), "text": set()}

    def visit(ds: Dataset) -> None:
        for elem in ds:
            if elem.VR == "SQ":
                for item in elem.value:
                    visit(item)
            elif elem.VR == "UI" and not str(elem.value).startswith("1.2.840.10008."):
                found["uid"].add(str(elem.value))
            elif elem.VR == "DA" and elem.value:
                found["date"].add(str(elem.value))
    for path in folder.glob("*.dcm"):
        ds = pydicom.dcmread(path)
        visit(ds)
        found["uid"].add(str(ds.file_meta.MediaStorageSOPInstanceUID))
    found["text"] = {MRN, "Smithson", "Johanna", "Hartwell", "Oscar", "STU4471", "ACC99812",
                     "19580412", "pre-IORT", "CT for Smithson"}
    return found


def _all_values(path: Path) -> list[str]:
    """Every value of every element of a file, nested sequences and file meta included."""
    ds = pydicom.dcmread(path)
    out: list[str] = [str(v.value) for v in ds.file_meta]

    def visit(item: Dataset) -> None:
        for elem in item:
            if elem.VR == "SQ":
                for sub in elem.value:
                    visit(sub)
            elif elem.VR not in ("OB", "OW", "OF", "OD", "UN"):
                out.append(str(elem.value))
    visit(ds)
    return out


@pytest.fixture(scope="module")
def anonymised(originals, tmp_path_factory) -> Path:
    """The same case exported (CT, RTSTRUCT, RTPLAN, RTDOSE) with --anonymise."""
    folder, _ = originals
    case = read_case(folder)
    ramp = np.linspace(0.0, 12.0, case.ct.array.size, dtype=np.float32)
    case.dose = case.ct.with_array(ramp.reshape(case.ct.shape))   # a stored dose: no engine run
    spec = dataclasses.replace(resolve_plan(case, plan_file=_phantom_plan()), mu=150.0)
    key = SiteKey(b"site-key-for-tests-0123456789abc")
    out = tmp_path_factory.mktemp("anon") / "export"
    export_case(case, spec, out, with_ct=True, deidentifier=Deidentifier(key))
    return out


def _phantom_plan() -> dict:
    from models.dicom.rt_export import PHANTOM_DEFAULTS
    from models.patient.phantom import planned_patient_from_applicator

    return {**PHANTOM_DEFAULTS,
            "patient_from_applicator": planned_patient_from_applicator(
                make_phantom(spacing_mm=SPACING_MM)).tolist()}


@pytest.mark.slow
def test_no_original_uid_name_id_date_or_description_survives(originals, anonymised) -> None:
    _, strings = originals
    files = sorted(anonymised.glob("*.dcm"))
    assert len(files) == make_phantom(spacing_mm=SPACING_MM).ct.shape[0] + 3
    assert len(strings["uid"]) > 50 and strings["date"]
    for path in files:
        raw = path.read_bytes()
        values = _all_values(path)
        joined = "\n".join(values)
        for uid in strings["uid"]:
            assert uid.encode() not in raw, (path.name, uid)
        for date in strings["date"]:
            assert date not in values and date.encode() not in raw, (path.name, date)
        for text in strings["text"]:
            assert text.lower() not in joined.lower() and text.encode() not in raw, \
                (path.name, text)
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert ds.PatientIdentityRemoved == "YES"
        codes = [item.CodeValue for item in ds.DeidentificationMethodCodeSequence]
        assert codes[:1] == ["113100"] and "113107" in codes
        assert not any(elem.tag.is_private for elem in ds)


@pytest.mark.slow
def test_references_between_the_files_still_resolve(anonymised) -> None:
    ct = [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(anonymised.glob("CT*"))]
    rs = pydicom.dcmread(anonymised / "RS.dcm")
    rp = pydicom.dcmread(anonymised / "RP.dcm")
    rd = pydicom.dcmread(anonymised / "RD.dcm", stop_before_pixels=True)
    ct_uids = {d.SOPInstanceUID for d in ct}
    assert len(ct_uids) == len(ct) and all(u.startswith("2.25.") for u in ct_uids)
    assert all(d.file_meta.MediaStorageSOPInstanceUID == d.SOPInstanceUID for d in ct)
    # RTDOSE -> RTPLAN -> RTSTRUCT -> CT
    assert rd.ReferencedRTPlanSequence[0].ReferencedSOPInstanceUID == rp.SOPInstanceUID
    assert rp.ReferencedStructureSetSequence[0].ReferencedSOPInstanceUID == rs.SOPInstanceUID
    frame = rs.ReferencedFrameOfReferenceSequence[0]
    study = frame.RTReferencedStudySequence[0]
    series = study.RTReferencedSeriesSequence[0]
    assert study.ReferencedSOPInstanceUID == ct[0].StudyInstanceUID
    assert series.SeriesInstanceUID == ct[0].SeriesInstanceUID
    assert {i.ReferencedSOPInstanceUID for i in series.ContourImageSequence} == ct_uids
    for roi in rs.ROIContourSequence:
        for contour in roi.ContourSequence:
            for image in contour.get("ContourImageSequence", []):
                assert image.ReferencedSOPInstanceUID in ct_uids
    # one patient, one study, one frame of reference in every object
    for ds in (*ct, rs, rp, rd):
        assert ds.FrameOfReferenceUID == frame.FrameOfReferenceUID == ct[0].FrameOfReferenceUID
        assert ds.StudyInstanceUID == ct[0].StudyInstanceUID
        assert ds.PatientID == ct[0].PatientID
    # and the clinical reader takes it: structures, geometry, the shifted study date
    back = read_case(anonymised)
    truth = make_phantom(spacing_mm=SPACING_MM)
    assert set(back.structures) == set(truth.structures)
    np.testing.assert_allclose(back.ct.patient_from_voxel, truth.ct.patient_from_voxel,
                               atol=1e-4)
    shifted = np.datetime64("2026-03-17") - np.datetime64(
        f"{ct[0].StudyDate[:4]}-{ct[0].StudyDate[4:6]}-{ct[0].StudyDate[6:]}")
    assert 1 <= shifted.astype(int) <= MAX_SHIFT_DAYS
    structures = read_rtstruct(anonymised / "RS.dcm", back.ct)
    assert structures is not None


def _dataset() -> Dataset:
    ds = Dataset()
    ds.PatientID, ds.PatientName, ds.PatientBirthDate = MRN, NAME, "19580412"
    ds.StudyInstanceUID, ds.StudyDate, ds.StudyTime = "1.2.3.4.5", "20260317", "081522"
    ds.StudyDescription, ds.AccessionNumber = "Smithson follow-up", "ACC1"
    return ds


def test_same_key_same_pseudonym_other_key_another() -> None:
    one, same, other = (SiteKey(b"a" * 32), SiteKey(b"a" * 32), SiteKey(b"b" * 32))
    outs = []
    for key in (one, same, other):
        ds = _dataset()
        Deidentifier(key).apply(ds)
        outs.append((ds.PatientID, str(ds.PatientName), ds.StudyInstanceUID, ds.StudyDate))
    assert outs[0] == outs[1]
    assert all(a != b for a, b in zip(outs[0], outs[2], strict=True))
    pseudonym = outs[0][0]
    sha = hashlib.sha256(MRN.encode()).hexdigest()
    assert pseudonym.removeprefix("ANON-") not in sha   # not an unsalted hash of the MRN
    assert pseudonym.removeprefix("ANON-") not in hashlib.sha256(NAME.encode()).hexdigest()
    assert "StudyDescription" not in _applied() and _applied().StudyTime == ""


def _applied() -> Dataset:
    ds = _dataset()
    Deidentifier(SiteKey(b"a" * 32)).apply(ds)
    return ds


def test_labels_are_kept_only_when_clean() -> None:
    ds = _dataset()
    ds.StructureSetLabel = "IORT"
    ds.RTPlanLabel = "Smithson plan"
    item = Dataset()
    item.ROINumber, item.ROIName = 3, "johanna tumour"
    keep = Dataset()
    keep.ROINumber, keep.ROIName = 4, "CTV"
    ds.StructureSetROISequence = [item, keep]
    ds.add_new(0x00091001, "LO", "private secret")
    Deidentifier(SiteKey(b"a" * 32)).apply(ds)
    assert ds.StructureSetLabel == "IORT" and ds.RTPlanLabel == "REMOVED"
    assert [i.ROIName for i in ds.StructureSetROISequence] == ["ROI3", "CTV"]
    assert 0x00091001 not in ds


def test_profile_codes_are_table_codes() -> None:
    assert set(PROFILE.values()) <= {"D", "Z", "X", "K", "C", "U", "X/Z", "X/D", "Z/D",
                                     "X/Z/D", "X/Z/U*"}
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID",
                    "FrameOfReferenceUID", "ReferencedSOPInstanceUID"):
        assert PROFILE[keyword] == "U"


def test_site_key_file_is_made_owner_only_and_reused(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        path = tmp_path / "conf" / "iort" / "site-key"
        first = SiteKey.load(path)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    assert SiteKey.load(path).secret == first.secret and len(first.secret) == 32
    assert SiteKey.load(tmp_path / "other").secret != first.secret
    os.chmod(path, 0o644)
    with pytest.raises(InputError, match="chmod 600"):
        SiteKey.load(path)
    os.chmod(path, 0o600)
    path.write_text("not a key")
    with pytest.raises(InputError, match="not an iort site key"):
        SiteKey.load(path)
