"""Phantom -> real DICOM -> the clinical import path -> the same case."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from models.base.errors import InputError
from models.dicom.reader import read_case
from models.dicom.writer import write_case, write_phantom
from models.patient.phantom import make_phantom

SPACING = (3.0, 3.0, 4.0)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return write_phantom(tmp_path_factory.mktemp("dicom") / "phantom", spacing_mm=SPACING,
                         seed=0)


@pytest.fixture(scope="module")
def truth():
    return make_phantom(spacing_mm=SPACING, seed=0)


def test_every_file_is_dicom_with_consistent_uids(folder: Path, truth) -> None:
    files = sorted(folder.iterdir())
    datasets = [pydicom.dcmread(p) for p in files]  # raises on any non-DICOM file
    images = [ds for ds in datasets if ds.Modality == "CT"]
    assert len(images) == truth.ct.shape[0]
    assert len(datasets) == len(images) + 1
    for key in ("StudyInstanceUID", "PatientID", "FrameOfReferenceUID", "SeriesInstanceUID"):
        assert len({str(ds.get(key)) for ds in images}) == 1, key
    assert len({ds.SOPInstanceUID for ds in datasets}) == len(datasets)
    rs = next(ds for ds in datasets if ds.Modality == "RTSTRUCT")
    assert rs.StudyInstanceUID == images[0].StudyInstanceUID
    assert rs.SeriesInstanceUID != images[0].SeriesInstanceUID
    first = min(images, key=lambda ds: float(ds.ImagePositionPatient[2]))
    np.testing.assert_allclose(np.asarray(first.ImagePositionPatient, dtype=float),
                               truth.ct.patient_from_voxel[:3, 3], atol=1e-6)
    assert [float(v) for v in first.PixelSpacing] == [SPACING[1], SPACING[0]]
    np.testing.assert_array_equal(first.pixel_array * float(first.RescaleSlope)
                                  + float(first.RescaleIntercept), truth.ct.array[0])


def test_import_gives_back_the_phantom(folder: Path, truth) -> None:
    case = read_case(folder)
    np.testing.assert_allclose(case.ct.patient_from_voxel, truth.ct.patient_from_voxel,
                               atol=1e-6)
    np.testing.assert_array_equal(case.ct.array, truth.ct.array)
    assert list(case.structures) == list(truth.structures)
    for name, structure in truth.structures.items():
        back = case.structures[name]
        dice = 2 * np.count_nonzero(back.mask & structure.mask) / (
            back.voxel_count + structure.voxel_count)
        assert dice >= 0.995, name
        assert back.roi_type == structure.roi_type
    for name, point in truth.fiducials_lps.items():
        np.testing.assert_allclose(case.fiducials_lps[name], point, atol=1e-3)
    assert case.patient_id == truth.patient_id
    assert len(case.image_instance_uids) == case.ct.shape[0]
    np.testing.assert_allclose(case.centroid_lps("CTV"), truth.centroid_lps("CTV"), atol=1e-6)


def test_uids_are_deterministic(folder: Path, tmp_path: Path) -> None:
    again = write_phantom(tmp_path / "again", spacing_mm=SPACING, seed=0)
    for name in ("CT_0001.dcm", "RS.dcm"):
        a, b = pydicom.dcmread(folder / name), pydicom.dcmread(again / name)
        assert a.SOPInstanceUID == b.SOPInstanceUID
        assert a.SeriesInstanceUID == b.SeriesInstanceUID


def test_non_empty_folder_refused_unless_forced(folder: Path, tmp_path: Path) -> None:
    target = tmp_path / "busy"
    target.mkdir()
    (target / "old.dcm").write_bytes(b"x")
    (target / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match=r"not empty.*--force"):
        write_phantom(target, spacing_mm=SPACING)
    write_phantom(target, spacing_mm=SPACING, force=True)
    assert (target / "keep.txt").read_text() == "mine"
    assert not (target / "old.dcm").exists()
    assert read_case(target).ct.shape == make_phantom(spacing_mm=SPACING).ct.shape


def test_rtstruct_for_another_frame_is_not_used(folder: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    rs = pydicom.dcmread(copy / "RS.dcm")
    rs.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID = "1.2.3.999"
    rs.save_as(copy / "RS.dcm")
    with pytest.raises(InputError, match="no structure set matches the frame of reference"):
        read_case(copy)


@pytest.mark.parametrize("modality", ["CT", "MR"])
def test_oblique_case_with_holes_round_trips(tmp_path: Path, rng: np.random.Generator,
                                            modality: str) -> None:
    from models.base.transforms import transform_from_rotvec
    from models.patient.case import Case, Structure
    from models.patient.volume import Volume

    grid = Volume.from_grid(np.zeros((12, 30, 34), dtype=np.float32), spacing_mm=(1.5, 1.2, 2.0),
                            origin_mm=(-25.0, -18.0, -11.0))
    pose = transform_from_rotvec([0.2, -0.35, 0.5], [10.0, 5.0, -20.0])
    ct = Volume(rng.integers(0, 800, size=grid.shape).astype(np.float32),
                pose @ grid.patient_from_voxel)
    centres = ct.voxel_centres()
    r = np.linalg.norm(centres - pose[:3, 3], axis=-1)
    shell = (r <= 14.0) & (r >= 6.0)  # holes on the middle slices
    ball = np.linalg.norm(centres - (pose[:3, 3] + [9.0, 0.0, 0.0]), axis=-1) <= 4.0
    case = Case(ct=ct, structures={"SHELL": Structure("SHELL", shell, (1, 2, 3), "ORGAN"),
                                   "BALL": Structure("BALL", ball, (4, 5, 6), "PTV")},
                fiducials_lps={"F": pose[:3, 3] + [3.0, 4.0, 5.0]}, patient_id="OBL",
                patient_name="Oblique^Test", modality=modality)
    from models.base.pseudonyms import SiteKey
    from models.dicom.deidentify import Deidentifier

    write_case(case, tmp_path / "obl", deidentifier=Deidentifier(SiteKey(b"k" * 32)))
    back = read_case(tmp_path / "obl")
    assert back.modality == modality
    assert back.patient_id.startswith("ANON-")
    assert back.patient_name == "ANON^" + back.patient_id.removeprefix("ANON-")
    assert back.patient_id != "OBL" and "Oblique" not in back.patient_name
    np.testing.assert_allclose(back.ct.patient_from_voxel, ct.patient_from_voxel, atol=1e-5)
    np.testing.assert_array_equal(back.ct.array, ct.array)
    for name in ("SHELL", "BALL"):
        truth, got = case.structures[name].mask, back.structures[name].mask
        dice = 2 * np.count_nonzero(truth & got) / (truth.sum() + got.sum())
        assert dice >= 0.995, name
    np.testing.assert_allclose(back.fiducials_lps["F"], case.fiducials_lps["F"], atol=1e-3)
