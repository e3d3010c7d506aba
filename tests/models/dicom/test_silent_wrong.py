"""No silent wrong data: damaged series and structure sets are refused, never half-imported.

Each test damages a copy of a small phantom export (eight CT slices through the target and
its RT Structure Set) the way files are damaged in the field and checks that the import
either refuses it with an :class:`models.base.errors.InputError` naming the file and the
tag, or imports exactly what an undamaged folder gives (the truth is the undamaged import).
"""

from __future__ import annotations

import json
import shutil
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pydicom
import pytest

from models.base.errors import InputError
from models.dicom.reader import read_case

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom on invalid values

MINI_SLICES = 8


@pytest.fixture(scope="module")
def mini_source(tmp_path_factory, coarse_phantom) -> Path:
    """Eight CT slices through the tumour bed and the phantom's RTSTRUCT."""
    from models.dicom.writer import write_phantom

    full = write_phantom(tmp_path_factory.mktemp("phantom") / "dicom", spacing_mm=(3, 3, 4))
    first = int(np.argwhere(coarse_phantom.structures["CTV"].mask)[:, 0].min())
    mini = tmp_path_factory.mktemp("mini-source")
    for n, k in enumerate(range(first, first + MINI_SLICES)):
        shutil.copy(full / f"CT_{k + 1:04d}.dcm", mini / f"CT_{n + 1:04d}.dcm")
    shutil.copy(full / "RS.dcm", mini)
    return mini


@pytest.fixture(scope="module")
def truth(mini_source):
    return read_case(mini_source)


@pytest.fixture
def mini(mini_source, tmp_path) -> Path:
    folder = tmp_path / "mini"
    shutil.copytree(mini_source, folder)
    return folder


def _slices(folder: Path) -> list[Path]:
    """CT files sorted along the slice normal (the phantom's slices go up in z)."""
    return sorted(folder.glob("CT_*.dcm"),
                  key=lambda p: float(pydicom.dcmread(p, stop_before_pixels=True)
                                      .ImagePositionPatient[2]))


def _edit(path: Path, **attrs) -> None:
    ds = pydicom.dcmread(path)
    for key, value in attrs.items():
        if value is None:
            delattr(ds, key)
        else:
            setattr(ds, key, value)
    ds.save_as(path)


def _value_offset(data: bytes, tag: int) -> tuple[int, int]:
    """(start of the element, start of its value) of a top-level explicit-VR element."""
    ds = pydicom.dcmread(pydicom.filebase.DicomBytesIO(data), defer_size=None)
    raw = ds.get_item(tag)
    return raw.value_tell - 8, raw.value_tell


# --- RT Structure Set -------------------------------------------------------------------

def test_rtstruct_with_flipped_modality_is_refused(mini):
    _edit(mini / "RS.dcm", Modality="RTSTRUCu")
    with pytest.raises(InputError, match=r"RS\.dcm.*Modality \(0008,0060\)"):
        read_case(mini)


@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.9, 0.99])
def test_truncated_rtstruct_is_refused(mini, fraction):
    path = mini / "RS.dcm"
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(InputError, match=r"RS\.dcm"):
        read_case(mini)


def test_rtstruct_with_empty_roi_contour_sequence_is_refused(mini):
    _edit(mini / "RS.dcm", ROIContourSequence=[])
    with pytest.raises(InputError, match=r"RS\.dcm.*ROIContourSequence \(3006,0039\)"):
        read_case(mini)


def _edit_roi(path: Path, roi_name: str, change) -> None:
    ds = pydicom.dcmread(path)
    number = next(int(r.ROINumber) for r in ds.StructureSetROISequence if r.ROIName == roi_name)
    item = next(c for c in ds.ROIContourSequence if int(c.ReferencedROINumber) == number)
    change(item)
    ds.save_as(path)


def test_target_contours_far_off_the_grid_leave_no_target(mini, tmp_path):
    def move(item):
        for contour in item.ContourSequence:
            data = np.asarray(contour.ContourData, dtype=float).reshape(-1, 3)
            data[:, 0] += 1000.0
            contour.ContourData = [f"{v:.3f}" for v in data.ravel()]

    _edit_roi(mini / "RS.dcm", "CTV", move)
    case = read_case(mini)
    assert "CTV" not in case.structures
    from guidance.cli.main import main

    pose = tmp_path / "pose.json"
    pose.write_text(json.dumps(np.eye(4).tolist()))
    assert main(["dose", "case", str(mini), "--energy", "9", "--applicator", "60",
                 "--pose", str(pose), "--out", str(tmp_path / "out")]) == 2


def test_duplicated_target_contours_are_not_erased(mini, truth):
    def duplicate(item):
        item.ContourSequence = list(item.ContourSequence) + [
            pydicom.Dataset(c) for c in item.ContourSequence]

    _edit_roi(mini / "RS.dcm", "CTV", duplicate)
    case = read_case(mini)
    np.testing.assert_array_equal(case.structures["CTV"].mask, truth.structures["CTV"].mask)


def test_point_roi_with_many_points_is_refused(mini, truth, rng):
    name = sorted(truth.fiducials_lps)[0]

    def spray(item):
        points = truth.fiducials_lps[name] + rng.normal(0.0, 50.0, size=(1000, 3))
        item.ContourSequence[0].ContourData = [f"{v:.3f}" for v in points.ravel()]
        item.ContourSequence[0].NumberOfContourPoints = 1000

    _edit_roi(mini / "RS.dcm", name, spray)
    with pytest.raises(InputError, match=rf"RS\.dcm.*{name}.*POINT.*1000 points"):
        read_case(mini)


# --- the image series -------------------------------------------------------------------

@pytest.mark.parametrize("end", [0, -1])
def test_zero_byte_end_slice_is_refused(mini, end):
    victim = _slices(mini)[end]
    victim.write_bytes(b"")
    with pytest.raises(InputError, match=rf"{victim.name}.*empty"):
        read_case(mini)


def test_end_slice_cut_inside_series_uid_is_refused(mini):
    victim = _slices(mini)[-1]
    data = victim.read_bytes()
    _, value = _value_offset(data, 0x0020000E)
    victim.write_bytes(data[: value + 10])
    with pytest.raises(InputError, match=rf"{victim.name}"):
        read_case(mini)


def test_missing_rescale_intercept_on_one_slice_is_refused(mini):
    victim = _slices(mini)[3]
    _edit(victim, RescaleIntercept=None)
    with pytest.raises(InputError, match=rf"{victim.name}.*RescaleIntercept \(0028,1052\)"):
        read_case(mini)


def test_rescale_intercept_with_patched_vr_is_refused(mini):
    victim = _slices(mini)[3]
    data = bytearray(victim.read_bytes())
    start, _ = _value_offset(bytes(data), 0x00281052)
    assert data[start + 4:start + 6] == b"DS"
    data[start + 4:start + 6] = b"US"
    victim.write_bytes(bytes(data))
    with pytest.raises(InputError, match=rf"{victim.name}.*RescaleIntercept \(0028,1052\)"):
        read_case(mini)


@pytest.mark.parametrize(("keyword", "value"), [
    ("RescaleSlope", "0"), ("RescaleSlope", "-1"), ("RescaleSlope", "1e308"),
    ("RescaleIntercept", "1e308"), ("RescaleIntercept", "-1e12")])
def test_absurd_rescale_is_refused(mini, keyword, value):
    victim = _slices(mini)[2]
    _edit(victim, **{keyword: value})
    with pytest.raises(InputError, match=rf"{victim.name}.*{keyword}"):
        read_case(mini)


@pytest.mark.parametrize("keyword", ["PatientID", "FrameOfReferenceUID"])
def test_mixed_patient_or_frame_in_one_series_is_refused(mini, keyword):
    victim = _slices(mini)[5]
    _edit(victim, **{keyword: "9.9.9" if keyword.endswith("UID") else "SOMEONE-ELSE"})
    with pytest.raises(InputError, match=rf"{victim.name}.*{keyword}"):
        read_case(mini)


def test_columns_lie_is_refused(mini):
    for path in _slices(mini):
        ds = pydicom.dcmread(path)
        _edit(path, Columns=int(ds.Columns) - 2)
    with pytest.raises(InputError,
                       match=r"CT_\d+\.dcm.*Pixel Data \(7FE0,0010\).*Columns \(0028,0011\)"):
        read_case(mini)


def test_huge_rows_and_columns_are_refused_before_allocating(mini):
    for path in _slices(mini):
        _edit(path, Rows=65535, Columns=65535)
    tracemalloc.start()
    try:
        with pytest.raises(InputError, match=r"CT_\d+\.dcm.*65535"):
            read_case(mini)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 200e6


def test_large_non_dicom_file_is_skipped_quickly(mini, truth):
    blob = mini / "zeros.bin"
    with blob.open("wb") as handle:
        handle.truncate(64 * 1024 * 1024)  # 64 MB of zeros (sparse)
    start = time.perf_counter()
    case = read_case(mini)
    assert time.perf_counter() - start < 3.0
    np.testing.assert_array_equal(case.ct.array, truth.ct.array)


def test_undamaged_copy_imports_like_the_truth(mini, truth):
    case = read_case(mini)
    np.testing.assert_array_equal(case.ct.array, truth.ct.array)
    assert set(case.structures) == set(truth.structures) and "CTV" in case.structures


@pytest.mark.parametrize("victim", ["RS.dcm", "CT_0008.dcm"])
def test_dcm_file_damaged_in_its_preamble_is_refused_not_skipped(mini, victim):
    """Six bytes inserted before DICM made the RTSTRUCT vanish: a case with no structures."""
    path = mini / victim
    data = bytearray(path.read_bytes())
    data[101:101] = b"\x00\x11\x22\x33\x44\x55"
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match=rf"{victim}: unusable DICOM file.*named like a DICOM"):
        read_case(mini)


def test_bytes_inserted_in_pixel_data_are_refused(mini):
    """Bytes inserted inside the pixels shift the image; pydicom ignores the surplus."""
    victim = _slices(mini)[4]
    data = bytearray(victim.read_bytes())
    data[len(data) - 500:len(data) - 500] = b"\x01\x02\x03\x04"
    victim.write_bytes(bytes(data))
    with pytest.raises(InputError, match=rf"{victim.name}: 4 byte\(s\) after Pixel Data"):
        read_case(mini)


@pytest.mark.parametrize(("keyword", "value"), [("PixelRepresentation", 1),
                                                ("BitsStored", 10)])
def test_one_slice_with_another_pixel_format_is_refused(mini, keyword, value):
    victim = _slices(mini)[2]
    _edit(victim, **{keyword: value})
    with pytest.raises(InputError, match=rf"{victim.name}.*{keyword}"):
        read_case(mini)


def test_a_series_without_pixel_representation_is_refused(mini):
    """Found by the fuzzer: PixelRepresentation (Type 1) missing on every slice defaulted to
    unsigned, reading every negative stored value 65,536 too high."""
    for path in _slices(mini):
        _edit(path, PixelRepresentation=None)
    with pytest.raises(InputError, match=r"CT_\d+\.dcm: missing PixelRepresentation"):
        read_case(mini)


@pytest.mark.parametrize("keyword", ["RescaleSlope", "RescaleIntercept"])
def test_a_rescale_with_two_values_is_refused(mini, keyword):
    """Found by the fuzzer: RescaleIntercept "1\\2" (two values where one belongs) was read
    as its first value."""
    victim = _slices(mini)[2]
    _edit(victim, **{keyword: ["1", "2"]})
    with pytest.raises(InputError, match=rf"{victim.name}: {keyword} holds 2 values"):
        read_case(mini)


def test_an_end_slice_whose_series_uid_runs_on_is_refused(mini):
    """Found by the fuzzer: a damaged length of SeriesInstanceUID made the UID run on into
    the next bytes; the slice no longer matched its series and was dropped silently."""
    victim = _slices(mini)[-1]
    data = bytearray(victim.read_bytes())
    start, _ = _value_offset(bytes(data), 0x0020000E)
    length = int.from_bytes(data[start + 6:start + 8], "little")
    data[start + 6:start + 8] = (length + 4).to_bytes(2, "little")
    victim.write_bytes(bytes(data))
    with pytest.raises(InputError, match=rf"{victim.name}: unusable DICOM file"):
        read_case(mini)


def test_an_end_slice_whose_series_uid_is_shifted_is_refused(mini):
    """Found by the fuzzer: a length field one byte short shifted SeriesInstanceUID
    ("1.2.8..." read as ".2.8..."); the slice was dropped silently."""
    victim = _slices(mini)[-1]
    data = bytearray(victim.read_bytes())
    start, _ = _value_offset(bytes(data), 0x0020000E)
    length = int.from_bytes(data[start + 6:start + 8], "little")
    data[start + 6:start + 8] = (length - 1).to_bytes(2, "little")
    victim.write_bytes(bytes(data))
    with pytest.raises(InputError, match=rf"{victim.name}"):
        read_case(mini)


def test_a_damaged_slice_whose_series_uid_lost_a_dot_is_refused(mini):
    """Found by the fuzzer: damage left a well-formed SeriesInstanceUID ("12.826..." from
    "1.2.826..."), no longer the series'; the slice was dropped silently."""
    from models.dicom.series import scan_folder, select_series

    scan = scan_folder(mini)
    (uid,) = scan.series
    victim = scan.series[uid].pop()
    damaged = uid[0] + uid[2:]
    scan.unreadable.append((victim.path, "incomplete DICOM file: image without Pixel Data "
                                         "(7FE0,0010)", damaged))
    with pytest.raises(InputError, match=rf"{victim.path.name}: unusable DICOM file"):
        select_series(scan, mini, None)
    # with --series given, a damaged file of an unrelated series does not block
    scan.unreadable[-1] = (victim.path, "damaged", "1.2.840.99.7")
    assert select_series(scan, mini, uid) is scan.series[uid]


def test_the_list_of_series_is_one_line_even_with_a_damaged_uid(mini):
    """Found by the fuzzer: a damaged SeriesInstanceUID holding a line break made the
    "choose one with --series" refusal two lines."""
    from models.dicom.series import scan_folder, select_series

    scan = scan_folder(mini)
    (uid,) = scan.series
    victim = scan.series[uid].pop()
    scan.series["1\n2.826"] = [victim]
    with pytest.raises(InputError, match="2 image series found") as info:
        select_series(scan, mini, None)
    assert "\n" not in str(info.value) and "1\\n2.826" in str(info.value)
