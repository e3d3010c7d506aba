"""RT Dose writer/reader: round trip, geometry vs SimpleITK, dciodvfy, pydicom's rtdose.dcm."""

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
from models.dicom.rtdose import dose_dataset, read_rtdose, write_rtdose
from models.patient.volume import Volume


@pytest.fixture
def identity() -> Identity:
    return Identity(patient_id="IORT-001", patient_name="Phantom^Dose",
                    study_instance_uid=new_uid(), frame_of_reference_uid=new_uid())


def _oblique_dose(rng: np.random.Generator, *, flip_k: bool = False) -> Volume:
    rot = Rotation.from_euler("zyx", [15, -10, 5], degrees=True).as_matrix()
    if flip_k:
        rot[:, 2] *= -1  # k against the slice normal: left-handed index grid
    values = rng.uniform(0.0, 12.0, size=(6, 7, 8))
    return Volume.from_grid(values, spacing_mm=(2.0, 2.5, 3.0), origin_mm=(-40.0, 12.5, 7.0),
                            direction=rot)


def test_round_trip_oblique_grid(tmp_path, rng, identity):
    dose = _oblique_dose(rng)
    plan_uid = new_uid()
    path = write_rtdose(tmp_path / "rd.dcm", dose, identity, referenced_plan_uid=plan_uid)
    back = read_rtdose(path)
    step_gy = dose.array.max() / 65535
    np.testing.assert_allclose(back.dose.array, dose.array, atol=step_gy / 2 + 1e-12, rtol=0)
    np.testing.assert_allclose(back.dose.patient_from_voxel, dose.patient_from_voxel,
                               atol=1e-6, rtol=0)
    assert (back.units, back.dose_type, back.summation_type) == ("GY", "PHYSICAL", "PLAN")
    assert back.referenced_plan_uid == plan_uid
    assert back.instance.identity.frame_of_reference_uid == identity.frame_of_reference_uid
    assert back.instance.identity.study_instance_uid == identity.study_instance_uid
    assert back.instance.identity.patient_id == "IORT-001"


def test_32_bit_pixels_are_finer(tmp_path, rng, identity):
    dose = _oblique_dose(rng)
    path = write_rtdose(tmp_path / "rd32.dcm", dose, identity,
                        referenced_plan_uid=new_uid(), bits_allocated=32)
    back = read_rtdose(path)
    np.testing.assert_allclose(back.dose.array, dose.array,
                               atol=dose.array.max() / (2**32 - 1) + 1e-9, rtol=0)


def test_k_against_normal_is_flipped_not_lost(tmp_path, rng, identity):
    dose = _oblique_dose(rng, flip_k=True)
    path = write_rtdose(tmp_path / "rd.dcm", dose, identity, referenced_plan_uid=new_uid())
    back = read_rtdose(path)
    assert np.all(np.diff(pydicom.dcmread(path).GridFrameOffsetVector) > 0)
    # slice k of the input is slice nk - 1 - k of the file, at the same place
    np.testing.assert_allclose(back.dose.array[::-1], dose.array,
                               atol=dose.array.max() / 65535, rtol=0)
    nk, nj, ni = dose.shape
    ijk = np.array([[i, j, k] for i in (0, ni - 1) for j in (0, nj - 1) for k in (0, nk - 1)])
    flipped = ijk.copy()
    flipped[:, 2] = nk - 1 - ijk[:, 2]
    np.testing.assert_allclose(back.dose.voxel_to_patient(flipped), dose.voxel_to_patient(ijk),
                               atol=1e-6, rtol=0)


def test_geometry_and_values_match_simpleitk(tmp_path, rng, identity):
    sitk = pytest.importorskip("SimpleITK")
    dose = _oblique_dose(rng)
    path = write_rtdose(tmp_path / "rd.dcm", dose, identity, referenced_plan_uid=new_uid())
    image = sitk.ReadImage(str(path))
    direction = np.array(image.GetDirection()).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = direction * np.array(image.GetSpacing())[None, :]
    affine[:3, 3] = image.GetOrigin()
    np.testing.assert_allclose(affine, dose.patient_from_voxel, atol=1e-4, rtol=0)
    scaling = float(pydicom.dcmread(path).DoseGridScaling)
    np.testing.assert_allclose(sitk.GetArrayFromImage(image) * scaling,
                               read_rtdose(path).dose.array, rtol=1e-12, atol=0)


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dicom3tools not installed")
def test_dciodvfy_reports_no_errors(tmp_path, rng, identity):
    path = write_rtdose(tmp_path / "rd.dcm", _oblique_dose(rng), identity,
                        referenced_plan_uid=new_uid())
    out = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    report = out.stdout + out.stderr
    assert "RTDose" in report
    assert "Error" not in report, report


def test_reads_pydicom_rtdose_test_file():
    path = get_testdata_file("rtdose.dcm")
    ds = pydicom.dcmread(path)
    back = read_rtdose(path)
    assert back.dose.shape == (15, 10, 10)
    assert back.units == "RELATIVE"
    np.testing.assert_allclose(back.dose.array, ds.pixel_array * float(ds.DoseGridScaling),
                               rtol=1e-12, atol=0)
    np.testing.assert_allclose(back.dose.voxel_to_patient([0, 0, 0])[0],
                               [float(v) for v in ds.ImagePositionPatient], atol=1e-9, rtol=0)
    np.testing.assert_allclose(back.dose.spacing_mm, [10.0, 10.0, 5.0], atol=1e-12, rtol=0)


def test_absolute_frame_offsets_are_understood(tmp_path, rng, identity):
    dose = Volume.from_grid(rng.uniform(0, 5, (4, 3, 3)), spacing_mm=(1, 1, 2.5),
                            origin_mm=(0, 0, -30.0))
    ds = dose_dataset(dose, identity, referenced_plan_uid=new_uid())
    ds.GridFrameOffsetVector = [-30.0, -27.5, -25.0, -22.5]
    back = read_rtdose(ds)
    np.testing.assert_allclose(back.dose.patient_from_voxel, dose.patient_from_voxel,
                               atol=1e-9, rtol=0)


@pytest.mark.parametrize("mutate, message", [
    (lambda ds: setattr(ds, "GridFrameOffsetVector", [0, 2.5, 6, 7.5]), "uniformly"),
    (lambda ds: setattr(ds, "PixelData", ds.PixelData[:10]), "PixelData"),
    (lambda ds: delattr(ds, "ImagePositionPatient"), "ImagePositionPatient"),
    (lambda ds: setattr(ds, "ImageOrientationPatient", [1, 0, 0, 1, 0, 0]), "orthogonal"),
    (lambda ds: setattr(ds, "PixelSpacing", [0, 1]), "PixelSpacing"),
    (lambda ds: setattr(ds, "BitsAllocated", 8), "BitsAllocated"),
    (lambda ds: setattr(ds, "Modality", "CT") or setattr(ds, "SOPClassUID", "1.2.3"),
     "not an RT Dose"),
])
def test_malformed_dose_raises_input_error(rng, identity, mutate, message):
    dose = Volume.from_grid(rng.uniform(0, 5, (4, 3, 3)), spacing_mm=(1, 1, 2.5))
    ds = dose_dataset(dose, identity, referenced_plan_uid=new_uid())
    mutate(ds)
    with pytest.raises(InputError, match=message):
        read_rtdose(ds)


def test_missing_and_foreign_files(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_rtdose(tmp_path / "absent.dcm")
    with pytest.raises(InputError, match="not an RT Dose"):
        read_rtdose(get_testdata_file("CT_small.dcm"))
    garbage = tmp_path / "garbage.dcm"
    garbage.write_bytes(b"\x00" * 7 + b"not dicom at all")
    with pytest.raises(InputError):
        read_rtdose(garbage)


def test_writer_rejects_bad_grids(rng, identity):
    sheared = np.eye(4)
    sheared[:3, 2] = [0.5, 0.0, 2.0]
    with pytest.raises(ValueError, match="normal"):
        dose_dataset(Volume(np.ones((2, 2, 2)), sheared), identity,
                     referenced_plan_uid=new_uid())
    good = Volume.from_grid(np.ones((2, 2, 2)), spacing_mm=(1, 1, 1))
    with pytest.raises(ValueError, match="referenced_plan_uid"):
        dose_dataset(good, identity, referenced_plan_uid="")
    with pytest.raises(ValueError, match="NaN"):
        dose_dataset(good.with_array(np.full((2, 2, 2), np.nan)), identity,
                     referenced_plan_uid=new_uid())


def test_dose_grid_like_covers_the_dose_on_the_image_axes(rng):
    from models.dicom.rtdose import dose_grid_like
    from models.evaluation.dvh import resample_dose

    dose = _oblique_dose(rng)  # beam-aligned-like oblique grid, dose everywhere > 0
    image = Volume.from_grid(np.zeros((3, 3, 3)), spacing_mm=(0.8, 0.8, 3.0),
                             origin_mm=(100.0, 50.0, -20.0))
    grid = dose_grid_like(dose, image, spacing_mm=2.0, margin_mm=0.0)
    np.testing.assert_allclose(grid.direction, image.direction, atol=1e-12, rtol=0)
    np.testing.assert_allclose(grid.spacing_mm, [2.0, 2.0, 2.0], atol=1e-12, rtol=0)
    lo, hi = grid.bounds_mm()
    corners = dose.voxel_to_patient(np.array([[i, j, k] for i in (0, 7) for j in (0, 6)
                                              for k in (0, 5)], dtype=float))
    assert np.all(corners >= lo - 1e-9) and np.all(corners <= hi + 1e-9)
    # every dose voxel centre is inside the new grid, so the dose survives resampling
    on_grid = resample_dose(dose, grid)
    assert on_grid.array.max() <= dose.array.max() + 1e-12
    assert on_grid.array.max() > 0.9 * dose.array.max()


@pytest.mark.parametrize("dose_to", ["water", "medium"])
def test_dose_to_water_or_medium_is_written_in_the_dose_comment(tmp_path, rng, identity,
                                                                 dose_to):
    path = write_rtdose(tmp_path / "rd.dcm", _oblique_dose(rng), identity,
                        referenced_plan_uid=new_uid(), dose_to=dose_to)
    back = read_rtdose(path)
    assert back.comment == f"dose to {dose_to}"
    assert back.dose_type == "PHYSICAL"
    with pytest.raises(InputError, match="dose_to"):
        dose_dataset(_oblique_dose(rng), identity, referenced_plan_uid=new_uid(),
                     dose_to="tissue")
