"""Series import: geometry and values against SimpleITK, pydicom test files, and every rejection."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate

from models.base.errors import InputError
from models.base.transforms import transform_from_rotvec
from models.dicom.common import Identity, new_uid
from models.dicom.image_writer import write_image_series
from models.dicom.series import read_image_folder, scan_folder
from models.patient.volume import Volume

IDENTITY = Identity(patient_id="P1", patient_name="Test^Patient",
                    study_instance_uid=new_uid("study-test"),
                    frame_of_reference_uid=new_uid("for-test"))


def _write(volume: Volume, out: Path, *, modality: str = "CT", uid: str | None = None) -> Path:
    write_image_series(volume, out, IDENTITY, series_instance_uid=uid or new_uid(),
                       modality=modality)
    return out


def _volume(rng: np.random.Generator, *, shape=(9, 14, 17), spacing=(0.8, 0.9, 2.0),
            pose: np.ndarray | None = None, integer: bool = True) -> Volume:
    values = rng.integers(-1000, 2000, size=shape).astype(np.float32) if integer else \
        rng.normal(100.0, 50.0, size=shape).astype(np.float32)
    vol = Volume.from_grid(values, spacing_mm=spacing, origin_mm=(-10.0, 20.0, -30.5))
    if pose is not None:
        vol = Volume(values, pose @ vol.patient_from_voxel)
    return vol


def _sitk_volume(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    image = reader.Execute()
    affine = np.eye(4)
    affine[:3, :3] = np.asarray(image.GetDirection()).reshape(3, 3) * np.asarray(image.GetSpacing())
    affine[:3, 3] = image.GetOrigin()
    return sitk.GetArrayFromImage(image).astype(np.float64), affine


def _scramble(folder: Path, rng: np.random.Generator) -> None:
    """Rename files randomly into nested folders so neither name nor order helps sorting."""
    files = sorted(folder.glob("*.dcm"))
    for path in files:
        sub = folder / f"d{rng.integers(0, 3)}"
        sub.mkdir(exist_ok=True)
        path.rename(sub / f"{rng.integers(0, 10**9):09d}")


@pytest.mark.parametrize(("oblique", "integer", "modality"), [
    (False, True, "CT"), (True, True, "CT"), (True, False, "CT"), (False, False, "MR"),
])
def test_geometry_and_values_match_simpleitk(tmp_path: Path, rng: np.random.Generator,
                                             oblique: bool, integer: bool, modality: str
                                             ) -> None:
    pose = transform_from_rotvec([0.3, -0.2, 0.25], [5.0, -3.0, 7.0]) if oblique else None
    vol = _volume(rng, pose=pose, integer=integer)
    folder = _write(vol, tmp_path / "series", modality=modality)
    ref_values, ref_affine = _sitk_volume(folder)
    _scramble(folder, rng)
    series = read_image_folder(folder)
    np.testing.assert_allclose(series.volume.patient_from_voxel, ref_affine, atol=1e-4)
    np.testing.assert_array_equal(series.volume.array.astype(np.float64),
                                  ref_values.astype(np.float32).astype(np.float64))
    np.testing.assert_allclose(series.volume.patient_from_voxel, vol.patient_from_voxel,
                               atol=1e-4)
    tol = 0 if integer else 0.01  # non-integer values are quantised to 16 bits
    np.testing.assert_allclose(series.volume.array, vol.array, atol=tol)
    assert series.modality == modality


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "MR_small_RLE.dcm",
                                  "MR_small_implicit.dcm", "MR_small_bigendian.dcm"])
def test_pydicom_test_files_import(tmp_path: Path, name: str) -> None:
    src = Path(get_testdata_file(name))
    shutil.copy(src, tmp_path / name)
    series = read_image_folder(tmp_path)
    ds = pydicom.dcmread(src)
    expected = ds.pixel_array * float(ds.get("RescaleSlope", 1)) + float(
        ds.get("RescaleIntercept", 0))
    np.testing.assert_array_equal(series.volume.array[0], expected.astype(np.float32))
    iop = np.asarray(ds.ImageOrientationPatient, dtype=float)
    np.testing.assert_allclose(series.volume.patient_from_voxel[:3, 0],
                               iop[:3] * float(ds.PixelSpacing[1]), atol=1e-9)
    np.testing.assert_allclose(series.volume.patient_from_voxel[:3, 3],
                               np.asarray(ds.ImagePositionPatient, dtype=float), atol=1e-9)


@pytest.mark.parametrize("name", ["MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm"])
def test_compressed_series_decodes_losslessly(tmp_path: Path, name: str) -> None:
    shutil.copy(get_testdata_file(name), tmp_path / "a.dcm")
    series = read_image_folder(tmp_path)
    reference = pydicom.dcmread(get_testdata_file("MR_small.dcm")).pixel_array
    np.testing.assert_array_equal(series.volume.array[0], reference)


def test_undecodable_pixel_data_is_clear_error(tmp_path: Path) -> None:
    ds = pydicom.dcmread(get_testdata_file("MR_small_RLE.dcm"))
    # an RLE frame whose header claims no segments: cannot be decoded
    ds.PixelData = encapsulate([b"\x00" * 64])
    ds.save_as(tmp_path / "bad.dcm")
    with pytest.raises(InputError, match=r"bad\.dcm: cannot decode pixel data.*RLE Lossless"):
        read_image_folder(tmp_path)


@pytest.fixture
def series_dir(tmp_path: Path, rng: np.random.Generator) -> Path:
    return _write(_volume(rng, shape=(8, 6, 7)), tmp_path / "s")


def _files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.dcm"))


def _edit(path: Path, **attrs) -> None:
    ds = pydicom.dcmread(path)
    for key, value in attrs.items():
        setattr(ds, key, value)
    ds.save_as(path)


def test_missing_slice_rejected(series_dir: Path) -> None:
    _files(series_dir)[4].unlink()
    with pytest.raises(InputError, match=r"1 slice\(s\) missing between CT_0004\.dcm and "
                                         r"CT_0006\.dcm"):
        read_image_folder(series_dir)


def test_duplicate_slice_rejected(series_dir: Path) -> None:
    dup = series_dir / "copy.dcm"
    shutil.copy(_files(series_dir)[2], dup)
    _edit(dup, SOPInstanceUID=new_uid())
    with pytest.raises(InputError, match="duplicate slice"):
        read_image_folder(series_dir)


def test_non_uniform_spacing_rejected_or_resampled(series_dir: Path) -> None:
    files = _files(series_dir)
    for path in files[5:]:  # slices 5.. move 0.7 mm further: one step of 2.7 mm
        ds = pydicom.dcmread(path)
        ds.ImagePositionPatient = [float(v) for v in ds.ImagePositionPatient[:2]] + [
            float(ds.ImagePositionPatient[2]) + 0.7]
        ds.save_as(path)
    with pytest.raises(InputError, match=r"non-uniform slice spacing.*--resample"):
        read_image_folder(series_dir)
    series = read_image_folder(series_dir, resample=True)
    assert series.warnings and "resampled" in series.warnings[0]
    assert series.volume.spacing_mm[2] == pytest.approx(2.0)
    assert series.volume.shape[0] == 8  # (7*2 + 0.7) / 2 -> 8 slices of 2 mm
    first = pydicom.dcmread(files[0])
    np.testing.assert_array_equal(series.volume.array[0], first.pixel_array - 1024.0)


def test_gantry_tilt_rejected(series_dir: Path) -> None:
    for k, path in enumerate(_files(series_dir)):
        ds = pydicom.dcmread(path)
        pos = [float(v) for v in ds.ImagePositionPatient]
        ds.ImagePositionPatient = [pos[0], pos[1] + 0.35 * k, pos[2]]
        ds.GantryDetectorTilt = 10.0
        ds.save_as(path)
    with pytest.raises(InputError, match=r"gantry tilt.*GantryDetectorTilt \(0018,1120\)"):
        read_image_folder(series_dir)


def test_mixed_orientation_rejected(series_dir: Path) -> None:
    _edit(_files(series_dir)[3], ImageOrientationPatient=[1, 0, 0, 0, 0.8, -0.6])
    with pytest.raises(InputError, match=r"CT_0004\.dcm.*mixed orientations"):
        read_image_folder(series_dir)


def test_truncated_file_rejected(series_dir: Path) -> None:
    path = _files(series_dir)[2]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])
    with pytest.raises(InputError, match=r"CT_0003\.dcm.*truncated"):
        read_image_folder(series_dir)


def test_header_truncated_file_rejected(series_dir: Path) -> None:
    path = _files(series_dir)[2]
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(InputError, match=r"CT_0003\.dcm: unusable DICOM file"):
        read_image_folder(series_dir)


def test_non_image_objects_only(tmp_path: Path) -> None:
    shutil.copy(get_testdata_file("rtplan.dcm"), tmp_path / "plan.dcm")
    (tmp_path / "notes.txt").write_text("not dicom")
    with pytest.raises(InputError, match=r"no image series found \(RTPLAN\)"):
        read_image_folder(tmp_path)


def test_non_image_and_foreign_files_are_skipped(series_dir: Path) -> None:
    shutil.copy(get_testdata_file("rtplan.dcm"), series_dir / "plan.dcm")
    (series_dir / "README").write_text("export notes")
    scan = scan_folder(series_dir)
    assert scan.skipped == 1 and [m for _, m in scan.other] == ["RTPLAN"]
    assert read_image_folder(series_dir).volume.shape == (8, 6, 7)


def test_several_series_need_a_choice(tmp_path: Path, rng: np.random.Generator) -> None:
    _write(_volume(rng, shape=(3, 4, 5)), tmp_path / "a", uid="1.2.3.4")
    _write(_volume(rng, shape=(4, 4, 5)), tmp_path / "b", uid="1.2.3.5")
    with pytest.raises(InputError, match=r"2 image series found.*--series"):
        read_image_folder(tmp_path)
    assert read_image_folder(tmp_path, series_uid="1.2.3.5").volume.shape == (4, 4, 5)
    with pytest.raises(InputError, match=r"no series 9\.9"):
        read_image_folder(tmp_path, series_uid="9.9")


def test_multiframe_rejected(tmp_path: Path) -> None:
    shutil.copy(get_testdata_file("SC_rgb_rle_2frame.dcm"), tmp_path / "mf.dcm")
    with pytest.raises(InputError, match=r"mf\.dcm"):
        read_image_folder(tmp_path)


def test_image_without_geometry_rejected(tmp_path: Path) -> None:
    shutil.copy(get_testdata_file("image_dfl.dcm"), tmp_path / "dfl.dcm")  # deflated, 2-D
    with pytest.raises(InputError, match=r"dfl\.dcm: missing ImageOrientationPatient"):
        read_image_folder(tmp_path)


def test_dicomdir_tree_with_many_series(tmp_path: Path) -> None:
    root = Path(get_testdata_file("CT_small.dcm")).parent / "dicomdirtests"
    with pytest.raises(InputError, match="13 image series found"):
        read_image_folder(root)
    scan = scan_folder(root)
    assert sum(kind == "DICOMDIR" for _, kind in scan.other) >= 1
    # the one clean CT series: 5 slices, compared with SimpleITK on the same files
    uid = "1.3.6.1.4.1.5962.1.1.0.0.0.1194734704.16302.0.6"
    series = read_image_folder(root, series_uid=uid)
    folder = tmp_path / "ct"
    folder.mkdir()
    for path in series.files:
        shutil.copy(path, folder / path.name)
    values, affine = _sitk_volume(folder)
    np.testing.assert_allclose(series.volume.patient_from_voxel, affine, atol=1e-4)
    np.testing.assert_array_equal(series.volume.array, values.astype(np.float32))
    # a series whose scout slices have another orientation is refused, naming a file
    with pytest.raises(InputError, match="mixed orientations"):
        read_image_folder(root, series_uid="1.3.6.1.4.1.5962.1.1.0.0.0.1194734704.16302.0.2")


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file or folder"):
        read_image_folder(tmp_path / "nope")
