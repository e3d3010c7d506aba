"""The edited CT as a derived series, its RTSTRUCT and RTDOSE: references, content, dciodvfy."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest

from models.base.errors import InputError
from models.dicom.derived import export_edited_case
from models.dicom.reader import read_case
from models.dicom.rt_export import resolve_plan
from models.dicom.rtdose import read_rtdose
from models.dicom.rtstruct import read_rtstruct
from models.dicom.writer import write_phantom
from models.patient.edits import EditList, Provenance, Retraction

pytestmark = pytest.mark.slow  # phantom DICOM, import, edit, dose, export (~15 s)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("derived")
    write_phantom(root / "dicom", spacing_mm=(3.0, 3.0, 4.0))
    case = read_case(root / "dicom")
    move = np.eye(4)
    move[:3, 3] = (12.0, -33.0, 0.0)
    edits = EditList([Retraction("BOWEL", move, provenance=Provenance(
        "surgeon", 1.0, "tracked retractor"))])
    result = export_edited_case(case, edits, resolve_plan(case), root / "out")
    return case, edits, result


def test_the_edited_ct_is_a_derived_series_referencing_the_original(written) -> None:
    case, edits, result = written
    slices = sorted(result.out_dir.glob("CT_EDITED_*.dcm"))
    assert len(slices) == case.ct.shape[0] == result.derived_files
    ds = pydicom.dcmread(slices[3])
    assert ds.SeriesInstanceUID == result.derived_series_uid != case.series_instance_uid
    assert ds.StudyInstanceUID == case.study_instance_uid
    assert ds.FrameOfReferenceUID == case.frame_of_reference_uid
    assert list(ds.ImageType)[:2] == ["DERIVED", "SECONDARY"]
    assert "BOWEL moved 35 mm, 0 deg, by tracked retractor" in ds.DerivationDescription
    [series] = ds.ReferencedSeriesSequence
    assert series.SeriesInstanceUID == case.series_instance_uid
    assert [r.ReferencedSOPInstanceUID for r in series.ReferencedInstanceSequence] == \
        case.image_instance_uids
    assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID == case.image_instance_uids[3]
    assert ds.SOPInstanceUID not in case.image_instance_uids
    # read back through the clinical reader: the edited CT (vacated bowel air), not the
    # original, on the same grid
    back = read_case(result.out_dir, series_uid=result.derived_series_uid)
    edited = edits.apply(case)
    np.testing.assert_allclose(back.ct.patient_from_voxel, case.ct.patient_from_voxel,
                               atol=1e-3)
    np.testing.assert_allclose(back.ct.array, edited.ct.array, atol=0.5)
    assert np.abs(back.ct.array - case.ct.array).max() > 500.0


def test_rtstruct_holds_the_retracted_bowel_and_rtdose_the_dose_on_it(written) -> None:
    case, edits, result = written
    edited = edits.apply(case)
    structures = read_rtstruct(result.rtstruct, case.ct).structures
    moved, before = structures["BOWEL"].mask, case.structures["BOWEL"].mask
    want = edited.structures["BOWEL"].mask
    dice = 2 * np.count_nonzero(moved & want) / (moved.sum() + want.sum())
    assert dice >= 0.99 and 2 * np.count_nonzero(moved & before) / (
        moved.sum() + before.sum()) < 0.8
    ds = pydicom.dcmread(result.rtstruct)
    refs = {i.ReferencedSOPInstanceUID for roi in ds.ROIContourSequence
            for c in roi.ContourSequence for i in c.ContourImageSequence}
    derived = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID
               for p in result.out_dir.glob("CT_EDITED_*.dcm")}
    assert refs and refs <= derived
    dose = read_rtdose(result.rtdose)
    assert dose.dose.array.max() == pytest.approx(result.dose_max_gy, rel=1e-3)
    plan = pydicom.dcmread(result.rtplan)
    assert plan.ReferencedStructureSetSequence[0].ReferencedSOPInstanceUID == ds.SOPInstanceUID


def test_no_edits_is_refused_and_writes_nothing(written, tmp_path: Path) -> None:
    case, _, _ = written
    with pytest.raises(InputError, match="no anatomy edits"):
        export_edited_case(case, EditList(), resolve_plan(case), tmp_path / "x")
    assert not (tmp_path / "x").exists()


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dicom3tools not installed")
def test_dciodvfy_finds_no_errors(written) -> None:
    _, _, result = written
    for path in (sorted(result.out_dir.glob("CT_EDITED_*.dcm"))[0], result.rtstruct,
                 result.rtplan, result.rtdose):
        report = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
        errors = [ln for ln in (report.stdout + report.stderr).splitlines()
                  if ln.startswith("Error")]
        assert errors == [], (path.name, errors)
