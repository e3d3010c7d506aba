"""RTSTRUCT write/read: exact labelmap round trip, even-odd holes, points, dciodvfy, pydicom."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from models.base.errors import InputError
from models.dicom.rtstruct import contours_to_mask, read_rtstruct, write_rtstruct
from models.dicom.writer import RTSTRUCT_FILE, write_case
from models.patient.case import Structure
from models.patient.phantom import make_phantom
from models.patient.volume import Volume


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    case = make_phantom(spacing_mm=(3.0, 3.0, 4.0), seed=3)
    out = tmp_path_factory.mktemp("phantom")
    write_case(case, out)
    return case, out


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


def test_structures_and_fiducials_round_trip(written) -> None:
    case, out = written
    back = read_rtstruct(out / RTSTRUCT_FILE, case.ct)
    assert set(back.structures) == set(case.structures)
    for name, structure in case.structures.items():
        assert _dice(back.structures[name].mask, structure.mask) >= 0.995, name
        assert back.structures[name].roi_type == structure.roi_type
        assert back.structures[name].color_rgb == structure.color_rgb
    assert set(back.fiducials_lps) == set(case.fiducials_lps)
    for name, point in case.fiducials_lps.items():
        np.testing.assert_allclose(back.fiducials_lps[name], point, atol=1e-3)
    assert back.frame_of_reference_uid == case.frame_of_reference_uid
    assert back.referenced_series_uid == case.series_instance_uid
    assert back.warnings == []


def test_file_references_ct_slices(written) -> None:
    case, out = written
    ds = pydicom.dcmread(out / RTSTRUCT_FILE)
    assert ds.Modality == "RTSTRUCT"
    assert ds.PatientID == case.patient_id
    referenced = {item.ContourImageSequence[0].ReferencedSOPInstanceUID
                  for roi in ds.ROIContourSequence for item in roi.ContourSequence}
    assert referenced <= set(case.image_instance_uids)
    kinds = {item.ContourGeometricType for roi in ds.ROIContourSequence
             for item in roi.ContourSequence}
    assert kinds == {"CLOSED_PLANAR", "POINT"}


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dicom3tools not installed")
def test_dciodvfy_finds_no_errors(written) -> None:
    _, out = written
    for path in (out / RTSTRUCT_FILE, sorted(out.glob("CT_*.dcm"))[0]):
        report = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
        errors = [ln for ln in (report.stdout + report.stderr).splitlines()
                  if ln.startswith("Error")]
        assert errors == [], path.name


def test_edited_structure_written_and_read(written, tmp_path) -> None:
    case, _ = written
    retracted = np.roll(case.structures["BOWEL"].mask, 3, axis=1)
    edited = Structure("BOWEL_RETRACTED", retracted, (10, 20, 30), "AVOIDANCE")
    path = write_rtstruct(case, tmp_path / "edit.dcm", structures=[edited], fiducials={})
    back = read_rtstruct(path, case.ct)
    assert list(back.structures) == ["BOWEL_RETRACTED"]
    assert back.structures["BOWEL_RETRACTED"].roi_type == "AVOIDANCE"
    assert _dice(back.structures["BOWEL_RETRACTED"].mask, retracted) >= 0.995


def test_even_odd_square_with_hole_and_island() -> None:
    outer = np.array([[1.5, 1.5], [12.5, 1.5], [12.5, 12.5], [1.5, 12.5]])
    hole = np.array([[4.5, 4.5], [4.5, 8.5], [8.5, 8.5], [8.5, 4.5]])  # opposite winding
    island = np.array([[15.2, 2.0], [18.7, 2.0], [18.7, 5.9]])
    mask = contours_to_mask([outer, hole, island], (16, 20))
    truth = np.zeros((16, 20), dtype=bool)
    truth[2:13, 2:13] = True
    truth[5:9, 5:9] = False
    jj, ii = np.mgrid[0:16, 0:20]
    # triangle (15.2,2)-(18.7,2)-(18.7,5.9): inside when above the hypotenuse
    truth |= (jj >= 2) & (ii <= 18.7) & ((jj - 2.0) < (ii - 15.2) * (3.9 / 3.5)) & (jj < 5.9)
    np.testing.assert_array_equal(mask, truth)


def test_even_odd_polygon_clipped_at_grid_edge() -> None:
    poly = np.array([[-5.0, -5.0], [3.5, -5.0], [3.5, 3.5], [-5.0, 3.5]])
    mask = contours_to_mask([poly], (6, 6))
    truth = np.zeros((6, 6), dtype=bool)
    truth[:4, :4] = True
    np.testing.assert_array_equal(mask, truth)


def test_pydicom_rtstruct_test_file_imports() -> None:
    path = get_testdata_file("rtstruct.dcm")
    ds = pydicom.dcmread(path, force=True)
    points = np.concatenate([np.asarray(c.ContourData, dtype=float).reshape(-1, 3)
                             for roi in ds.ROIContourSequence for c in roi.ContourSequence])
    lo = points.min(axis=0) - 5.0
    z_planes = np.unique(points[:, 2])
    dz = float(np.min(np.diff(z_planes))) if z_planes.size > 1 else 1.0
    n = np.ceil((points.max(axis=0) + 5.0 - lo) / [1.0, 1.0, dz]).astype(int) + 1
    lo[2] = z_planes.min()
    grid = Volume.from_grid(np.zeros(n[::-1]), spacing_mm=(1.0, 1.0, dz), origin_mm=tuple(lo))
    back = read_rtstruct(path, grid)
    assert back.structures
    for structure in back.structures.values():
        assert structure.voxel_count > 0


def test_not_an_rtstruct_rejected(written) -> None:
    case, out = written
    with pytest.raises(InputError, match="not an RT Structure Set"):
        read_rtstruct(sorted(out.glob("CT_*.dcm"))[0], case.ct)


def test_garbage_file_rejected(tmp_path, written) -> None:
    case, _ = written
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"\x00" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\xff\xff")
    with pytest.raises(InputError, match=r"bad\.dcm"):
        read_rtstruct(bad, case.ct)


def test_duplicate_roi_names_are_kept_apart(written, tmp_path) -> None:
    case, _ = written
    one = Structure("ORGAN_X", case.structures["LIVER"].mask, (1, 1, 1), "ORGAN")
    two = Structure("ORGAN_X", case.structures["STOMACH"].mask, (2, 2, 2), "ORGAN")
    path = write_rtstruct(case, tmp_path / "dup.dcm", structures=[one, two], fiducials={})
    back = read_rtstruct(path, case.ct)
    assert sorted(back.structures) == ["ORGAN_X", "ORGAN_X_2"]
    assert _dice(back.structures["ORGAN_X_2"].mask, two.mask) >= 0.995
    assert any("used twice" in w for w in back.warnings)
