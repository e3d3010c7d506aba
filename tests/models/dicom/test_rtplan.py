"""RT Plan for an electron IORT beam: IEC angles, round trip, dciodvfy, pydicom's rtplan.dcm."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from scipy.spatial.transform import Rotation

from models.base.errors import InputError
from models.dicom.common import Identity, new_uid
from models.dicom.rtplan import (
    BeamAngles,
    ElectronPlan,
    angles_from_pose,
    patient_from_applicator_from_angles,
    plan_dataset,
    read_rtplan,
    write_rtplan,
)


def _pose(rotation: np.ndarray, translation_mm) -> np.ndarray:
    pose = np.eye(4)
    pose[:3, :3] = rotation
    pose[:3, 3] = translation_mm
    return pose


@pytest.fixture
def plan() -> ElectronPlan:
    rot = Rotation.from_euler("xyz", [95, 12, -20], degrees=True).as_matrix()
    return ElectronPlan(machine="IORT-LINAC", energy_mev=9.0, applicator_id="A60B30",
                        applicator_diameter_mm=60.0, bevel_deg=30.0, mu=1187.25,
                        prescription_gy=10.0, reference_point_lps=[4.0, 31.5, -12.0],
                        patient_from_applicator=_pose(rot, [3.0, 10.5, -14.0]),
                        isodose_percent=90.0, source_axis_distance_mm=500.0)


@pytest.fixture
def identity() -> Identity:
    return Identity(patient_id="IORT-001", patient_name="Phantom^Plan",
                    study_instance_uid=new_uid(), frame_of_reference_uid=new_uid())


@pytest.mark.parametrize("angles, beam_lps", [
    (BeamAngles(0, 0, 0), [0, 1, 0]),      # gantry up: beam towards posterior
    (BeamAngles(90, 0, 0), [-1, 0, 0]),    # source on the patient's left
    (BeamAngles(270, 0, 0), [1, 0, 0]),
    (BeamAngles(180, 0, 0), [0, -1, 0]),   # from below
    (BeamAngles(90, 90, 0), [0, 0, 1]),    # couch 90: source at the feet, beam to the head
])
def test_iec_angles_give_known_beam_directions(angles, beam_lps):
    pose = patient_from_applicator_from_angles(angles, np.zeros(3))
    np.testing.assert_allclose(pose[:3, 2], beam_lps, atol=1e-12, rtol=0)
    assert np.linalg.det(pose[:3, :3]) == pytest.approx(1.0, abs=1e-12)


def test_collimator_turns_the_applicator_about_the_beam():
    a0 = patient_from_applicator_from_angles(BeamAngles(0, 0, 0), np.zeros(3))
    a30 = patient_from_applicator_from_angles(BeamAngles(0, 0, 30), np.zeros(3))
    np.testing.assert_allclose(a30[:3, 2], a0[:3, 2], atol=1e-12, rtol=0)
    cos = float(a0[:3, 0] @ a30[:3, 0])
    assert cos == pytest.approx(np.cos(np.radians(30)), abs=1e-12)


def test_pose_angles_round_trip(rng):
    for _ in range(200):
        rot = Rotation.random(random_state=int(rng.integers(2**31))).as_matrix()
        pose = _pose(rot, rng.normal(0.0, 50.0, 3))
        angles = angles_from_pose(pose)
        assert 0 <= angles.gantry_deg < 360 and 0 <= angles.collimator_deg < 360
        assert angles.couch_deg <= 90 or angles.couch_deg >= 270
        back = patient_from_applicator_from_angles(angles, pose[:3, 3])
        np.testing.assert_allclose(back, pose, atol=1e-9, rtol=0)


def test_write_read_round_trip(tmp_path, plan, identity):
    struct_uid, plan_uid = new_uid(), new_uid()
    path = write_rtplan(tmp_path / "rp.dcm", plan, identity, structure_set_uid=struct_uid,
                        sop_instance_uid=plan_uid)
    read = read_rtplan(path)
    assert read.referenced_structure_set_uid == struct_uid
    assert read.instance.identity.frame_of_reference_uid == identity.frame_of_reference_uid
    assert read.instance.sop_instance_uid == plan_uid
    assert read.patient_position == "HFS"
    back = read.electron_plan()
    for name in ("machine", "energy_mev", "applicator_id", "applicator_diameter_mm",
                 "bevel_deg", "mu", "prescription_gy", "isodose_percent", "fractions",
                 "source_axis_distance_mm", "label"):
        assert getattr(back, name) == getattr(plan, name), name
    np.testing.assert_allclose(back.reference_point_lps, plan.reference_point_lps,
                               atol=1e-9, rtol=0)
    # angles are written with 12 significant digits: sub-micrometre/nano-degree round trip
    np.testing.assert_allclose(back.patient_from_applicator, plan.patient_from_applicator,
                               atol=1e-8, rtol=0)
    ds = pydicom.dcmread(path)
    beam = ds.BeamSequence[0]
    assert beam.RadiationType == "ELECTRON"
    assert beam.ApplicatorSequence[0].ApplicatorType == "INTRAOPERATIVE"
    assert float(ds.FractionGroupSequence[0].ReferencedBeamSequence[0].BeamMeterset) == 1187.25
    assert ds.RTPlanGeometry == "PATIENT"


def test_without_structure_set_geometry_is_treatment_device(plan, identity):
    ds = plan_dataset(plan, identity)
    assert ds.RTPlanGeometry == "TREATMENT_DEVICE"
    assert "ReferencedStructureSetSequence" not in ds


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dicom3tools not installed")
@pytest.mark.parametrize("with_structures", [True, False])
def test_dciodvfy_reports_no_errors(tmp_path, plan, identity, with_structures):
    path = write_rtplan(tmp_path / "rp.dcm", plan, identity,
                        structure_set_uid=new_uid() if with_structures else "")
    out = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    report = out.stdout + out.stderr
    assert "RTPlan" in report
    assert "Error" not in report, report


def test_reads_pydicom_rtplan_test_file():
    read = read_rtplan(get_testdata_file("rtplan.dcm"))
    assert read.label == "Plan1"
    assert read.fractions == 30
    beam = read.beams[0]
    assert (beam.radiation_type, beam.machine, beam.energy_mev) == ("PHOTON", "unit001", 6.0)
    assert beam.mu == pytest.approx(116.0036697, abs=1e-9)
    np.testing.assert_allclose(beam.isocenter_lps, [235.711172833292, 244.135437110782,
                                                    -724.97815409918], atol=1e-9, rtol=0)
    target = next(r for r in read.dose_references if r.reference_type == "TARGET")
    assert target.prescription_gy == pytest.approx(30.826203, abs=1e-9)
    with pytest.raises(InputError, match="ELECTRON"):
        read.electron_plan()


@pytest.mark.parametrize("mutate, message", [
    (lambda ds: setattr(ds, "Modality", "CT") or setattr(ds, "SOPClassUID", "1.2.3"),
     "not an RT Plan"),
    (lambda ds: setattr(ds.BeamSequence[0], "ControlPointSequence", []), "ControlPoint"),
    (lambda ds: setattr(ds.BeamSequence[0].ControlPointSequence[0], "IsocenterPosition",
                        [1, 2]), "IsocenterPosition"),
    (lambda ds: setattr(ds.DoseReferenceSequence[0], "DoseReferencePointCoordinates",
                        [1.0, 2.0, 3.0, 4.0]), "DoseReferencePointCoordinates"),
])
def test_malformed_plan_raises_input_error(plan, identity, mutate, message):
    ds = plan_dataset(plan, identity)
    mutate(ds)
    with pytest.raises(InputError, match=message):
        read_rtplan(ds).electron_plan()


def test_plan_without_applicator_or_target_is_refused(plan, identity):
    ds = plan_dataset(plan, identity)
    del ds.BeamSequence[0].ApplicatorSequence
    with pytest.raises(InputError, match="applicator"):
        read_rtplan(ds).electron_plan()
    ds = plan_dataset(plan, identity)
    ds.DoseReferenceSequence[0].DoseReferenceType = "ORGAN_AT_RISK"
    with pytest.raises(InputError, match="TARGET"):
        read_rtplan(ds).electron_plan()


@pytest.mark.parametrize("field, value, message", [
    ("bevel_deg", 95.0, "bevel_deg"), ("energy_mev", 0.0, "energy_mev"),
    ("mu", -1.0, "mu"), ("fractions", 0, "fractions"), ("machine", "", "machine"),
])
def test_plan_validation(plan, field, value, message):
    kwargs = {name: getattr(plan, name) for name in plan.__dataclass_fields__}
    kwargs[field] = value
    with pytest.raises(ValueError, match=message):
        ElectronPlan(**kwargs)
