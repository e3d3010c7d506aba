"""RT export core: RTSTRUCT + RTPLAN + RTDOSE of the phantom, references, dciodvfy, round trip."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest

from models.base.errors import InputError
from models.base.pseudonyms import SiteKey
from models.dicom.deidentify import Deidentifier
from models.dicom.reader import read_case
from models.dicom.rt_export import export_case, reference_point_lps, resolve_plan
from models.dicom.rtdose import read_rtdose
from models.dicom.rtplan import read_rtplan
from models.dicom.rtstruct import read_rtstruct
from models.dicom.writer import write_phantom
from models.evaluation.dvh import compute_dvh
from models.patient.case_store import load_case, save_case
from models.patient.phantom import planned_patient_from_applicator

SPACING_MM = (3.0, 3.0, 4.0)

pytestmark = pytest.mark.slow  # end to end: phantom DICOM, import, dose, export (~25 s)


@pytest.fixture(scope="module")
def case_dir(tmp_path_factory) -> Path:
    """The coarse phantom through the clinical path: DICOM -> import -> case folder."""
    root = tmp_path_factory.mktemp("export")
    write_phantom(root / "dicom", spacing_mm=SPACING_MM)
    return save_case(read_case(root / "dicom"), root / "case")


@pytest.fixture(scope="module")
def exported(case_dir, tmp_path_factory):
    case = load_case(case_dir)
    spec = resolve_plan(case)
    out = tmp_path_factory.mktemp("rt")
    return case, spec, export_case(case, spec, out)


def test_objects_reference_the_ct_and_each_other(exported):
    case, _, result = exported
    rs, rp, rd = (pydicom.dcmread(p) for p in (result.rtstruct, result.rtplan, result.rtdose))
    for ds in (rs, rp, rd):
        assert ds.FrameOfReferenceUID == case.frame_of_reference_uid
        assert ds.StudyInstanceUID == case.study_instance_uid
        assert ds.PatientID == case.patient_id
    assert rd.DoseSummationType == "PLAN" and rd.DoseUnits == "GY"
    assert rd.ReferencedRTPlanSequence[0].ReferencedSOPInstanceUID == rp.SOPInstanceUID
    assert rp.ReferencedStructureSetSequence[0].ReferencedSOPInstanceUID == rs.SOPInstanceUID
    series = (rs.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0]
              .RTReferencedSeriesSequence[0])
    assert series.SeriesInstanceUID == case.series_instance_uid
    referenced = {item.ReferencedSOPInstanceUID for item in series.ContourImageSequence}
    assert referenced == set(case.image_instance_uids)
    assert len({rs.SeriesInstanceUID, rp.SeriesInstanceUID, rd.SeriesInstanceUID,
                case.series_instance_uid}) == 4


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dicom3tools not installed")
def test_dciodvfy_reports_no_errors(exported):
    _, _, result = exported
    for path, iod in ((result.rtstruct, "RTStructureSet"), (result.rtplan, "RTPlan"),
                      (result.rtdose, "RTDose")):
        out = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True,
                             timeout=60)
        report = out.stdout + out.stderr
        assert iod in report
        assert "Error" not in report, f"{path.name}:\n{report}"


def test_round_trip_through_our_readers(exported):
    case, spec, result = exported
    plan = read_rtplan(result.rtplan).electron_plan()
    assert (plan.machine, plan.energy_mev, plan.applicator_diameter_mm, plan.bevel_deg) == (
        spec.machine, spec.energy_mev, spec.applicator_diameter_mm, spec.bevel_deg)
    assert plan.prescription_gy == spec.prescription_gy
    assert plan.mu == pytest.approx(result.mu, rel=1e-9)
    np.testing.assert_allclose(plan.patient_from_applicator, spec.patient_from_applicator,
                               atol=1e-8, rtol=0)
    dose = read_rtdose(result.rtdose).dose
    # the reference point is the deepest central-axis point at the prescription dose
    at_reference = dose.sample(plan.reference_point_lps)[0]
    assert at_reference == pytest.approx(spec.prescription_gy, rel=0.03)
    assert dose.array.max() == pytest.approx(result.dose_max_gy, rel=1e-4)
    structures = read_rtstruct(result.rtstruct, case.ct).structures
    for name in ("CTV", "BODY", "PANCREAS"):
        np.testing.assert_array_equal(structures[name].mask, case.structure(name).mask)


def test_exported_dose_gives_the_engine_dose_coverage(exported):
    """DVH on the exported RTDOSE equals the DVH on the engine's beam grid within 1 %."""
    from models.beams.library import ElectronBeam
    from models.dose.electron import compute_electron_dose

    case, spec, result = exported
    engine = compute_electron_dose(case.ct, spec.patient_from_applicator,
                                   ElectronBeam(spec.machine, spec.energy_mev,
                                                spec.applicator_diameter_mm, spec.bevel_deg),
                                   prescription_gy=spec.prescription_gy)
    ctv = case.ct.with_array(case.structure("CTV").mask)
    ours = compute_dvh(read_rtdose(result.rtdose).dose, ctv, prescription_gy=10.0).metrics
    ref = compute_dvh(engine.dose, ctv, prescription_gy=10.0).metrics
    for attr in ("dmean_gy", "d90_gy", "d98_gy", "d2_gy"):
        assert getattr(ours, attr) == pytest.approx(getattr(ref, attr), abs=0.1), attr


def test_anonymised_package_holds_no_identifiers(case_dir, tmp_path):
    case = load_case(case_dir)
    original = [case.patient_id.encode(), case.patient_name.encode()]
    result = export_case(case, resolve_plan(case), tmp_path / "anon", with_ct=True,
                         deidentifier=Deidentifier(SiteKey(b"k" * 32)))
    files = sorted(result.out_dir.glob("*.dcm"))
    assert result.ct_files == case.ct.shape[0] and len(files) == result.ct_files + 3
    ids = set()
    for path in files:
        data = path.read_bytes()
        assert not any(text in data for text in original), path.name
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        ids.add((ds.PatientID, str(ds.PatientName), ds.StudyInstanceUID,
                 ds.FrameOfReferenceUID))
    assert len(ids) == 1  # one anonymous patient, one study, one frame of reference
    reimported = read_case(result.out_dir)
    assert set(reimported.structures) == set(case.structures)


def test_stored_dose_of_the_stored_plan_is_exported_as_is(case_dir, tmp_path):
    case = load_case(case_dir)
    spec = resolve_plan(case)
    first = export_case(case, spec, tmp_path / "first")
    case.dose = read_rtdose(first.rtdose).dose.with_array(
        read_rtdose(first.rtdose).dose.array * 0.5)
    case.plan = {"patient_from_applicator": spec.patient_from_applicator.tolist(),
                 "machine": spec.machine, "energy_mev": spec.energy_mev,
                 "applicator_diameter_mm": spec.applicator_diameter_mm, "bevel_deg": 0.0,
                 "prescription_gy": 5.0, "isodose_percent": 90.0, "mu": 555.5}
    again = export_case(case, resolve_plan(case), tmp_path / "stored", compute=False)
    assert not again.dose_computed
    assert read_rtplan(again.rtplan).electron_plan().mu == pytest.approx(555.5)
    np.testing.assert_allclose(read_rtdose(again.rtdose).dose.array.max(),
                               case.dose.array.max(), rtol=1e-4)
    # an option that changes the plan drops the stored MU: the dose must be recomputed
    changed = resolve_plan(case, overrides={"energy_mev": 10.0})
    assert changed.mu is None
    with pytest.raises(InputError, match="no-compute"):
        export_case(case, changed, tmp_path / "refused", compute=False)
    case.modality = "MR"
    with pytest.raises(InputError, match="not CT"):
        export_case(case, changed, tmp_path / "mr")


def test_a_clinical_case_without_a_plan_is_refused(case_dir):
    case = load_case(case_dir)
    case.patient_id = "CLINIC-0042"
    with pytest.raises(InputError, match="no planned applicator pose"):
        resolve_plan(case)
    spec = resolve_plan(case, plan_file={
        "patient_from_applicator": planned_patient_from_applicator().tolist(),
        "machine": "liac", "energy_mev": 8, "applicator_diameter_mm": 70, "bevel_deg": 0,
        "prescription_gy": 12, "isodose_percent": 90})
    assert spec.prescription_gy == 12.0
    with pytest.raises(InputError, match="patient_from_applicator"):
        resolve_plan(case, plan_file={"patient_from_applicator": [[1, 2], [3, 4]],
                                      "machine": "liac", "energy_mev": 8,
                                      "applicator_diameter_mm": 70, "bevel_deg": 0,
                                      "prescription_gy": 12, "isodose_percent": 90})


class _DepthDose:
    """A dose falling linearly with depth along +z of the pose (Gy)."""

    def __init__(self, pose: np.ndarray, surface_gy: float, slope_gy_per_mm: float) -> None:
        self.pose, self.surface_gy, self.slope = pose, surface_gy, slope_gy_per_mm

    def sample(self, points: np.ndarray) -> np.ndarray:
        depth_mm = (np.atleast_2d(points) - self.pose[:3, 3]) @ self.pose[:3, 2]
        return self.surface_gy - self.slope * depth_mm


def test_reference_point_is_the_deepest_axis_point_at_the_prescription():
    pose = planned_patient_from_applicator()
    point = reference_point_lps(_DepthDose(pose, 12.0, 0.1), pose, 10.0)  # 10 Gy at 20 mm
    np.testing.assert_allclose(point, pose[:3, 3] + 20.0 * pose[:3, 2], atol=1e-9)
    # nothing reaches the prescription: the axis maximum (the surface here)
    point = reference_point_lps(_DepthDose(pose, 5.0, 0.1), pose, 10.0)
    np.testing.assert_allclose(point, pose[:3, 3], atol=1e-9)


@pytest.mark.parametrize("edit, match", [
    ({"energy_mev": "12"}, "energy_mev"), ({"prescription_gy": True}, "prescription_gy"),
    ({"isodose_percent": 900}, "isodose_percent"), ({"bevel_deg": -15}, "bevel_deg"),
    ({"machine": 7}, "machine"), ({"patient_from_applicator": [[1, 0], [0, 1]]},
                                  "patient_from_applicator"),
    ({"patient_from_applicator": [[2, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]},
     "not orthonormal"),
])
def test_a_plan_file_with_a_wrong_value_is_refused_naming_it(tmp_path, edit, match) -> None:
    """Found by the fuzzer: plan values were float()-converted unchecked ("12", true, 900 %)
    and a refused pose did not name the file."""
    import json

    from models.dicom.rt_export import read_plan_file

    plan = {"patient_from_applicator": np.eye(4).tolist(), "machine": "liac",
            "energy_mev": 8.0, "applicator_diameter_mm": 70.0, "bevel_deg": 0.0,
            "prescription_gy": 10.0, "isodose_percent": 90.0}
    plan.update(edit)
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    with pytest.raises(InputError, match=match) as info:
        read_plan_file(path)
    assert "plan.json" in str(info.value)

def test_sigkill_during_forced_exports_leaves_one_whole_export(tmp_path):
    """``export --force`` killed at 6 random moments: RS, RP, RD always of one export (their
    references resolve), never a mix or a missing file."""
    import random

    from benchmarks.bench_integrity import export_kill_runs

    runs, exports_left = export_kill_runs(tmp_path / "e", runs=6, rng=random.Random(11))
    assert runs == 6 and exports_left >= 2   # kills landed before and after swaps
