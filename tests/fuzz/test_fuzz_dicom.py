"""Fuzz the DICOM import (CT series + RTSTRUCT): tag edits and byte damage of a small case.

Oracle: :func:`models.dicom.reader.read_case` refuses (one-line InputError naming the
folder or file) or gives back exactly what the edited files say, computed here
independently from the raw tags with pydicom and numpy: the same number of slices as
written (none dropped), HU = stored x RescaleSlope + RescaleIntercept of *that* slice,
the affine from ImagePositionPatient / ImageOrientationPatient / PixelSpacing; structures
and fiducials identical to the undamaged import when only a CT slice was edited, never
silently missing, a fiducial exactly its one contour point.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from pydicom.dataelem import DataElement

from tests.fuzz.harness import (
    fresh_folder,
    fuzz_settings,
    logged_warnings,
    mutated_bytes,
    run_case,
    workspace,
)

pytestmark = pytest.mark.fuzz

_WORK = workspace("dicom")
_SHAPE = (5, 12, 14)   # slices, rows, columns


def _base_case():
    from models.patient.case import Case, Structure
    from models.patient.volume import Volume

    rng = np.random.default_rng(17)
    hu = rng.integers(-1000, 1500, size=_SHAPE).astype(np.float32)
    ct = Volume.from_grid(hu, spacing_mm=(1.5, 1.25, 2.5), origin_mm=(-10.0, 20.0, -5.0))
    body = np.zeros(_SHAPE, bool)
    body[:, 1:-1, 1:-1] = True
    ctv = np.zeros(_SHAPE, bool)
    ctv[1:4, 3:8, 4:10] = True
    return Case(ct=ct, structures={"BODY": Structure("BODY", body, roi_type="EXTERNAL"),
                                   "CTV": Structure("CTV", ctv, roi_type="CTV")},
                fiducials_lps={"FID1": np.array([-4.0, 25.0, 0.0])},
                patient_id="FUZZ01", patient_name="Fuzz^Case")


def _write_base() -> tuple[dict[str, bytes], object]:
    from models.dicom.reader import read_case
    from models.dicom.writer import write_case

    folder = write_case(_base_case(), _WORK / "base")
    files = {p.name: p.read_bytes() for p in sorted(folder.iterdir())}
    return files, read_case(folder)


_FILES, _TRUTH = _write_base()
_SLICES = sorted(n for n in _FILES if n != "RS.dcm")
_RS = "RS.dcm"
assert _RS in _FILES and len(_SLICES) == _SHAPE[0]

# ------------------------------------------------------------------------ the mutations

_DS_VALUES = ["0", "-1", "1", "2", "0.5", "1e308", "-1e308", "NaN", "inf", "", "1e-30",
              "-1024", "1024", "3.5", "1\\2", "abc"]
_IMAGE_EDITS = {
    "RescaleSlope": st.sampled_from([*_DS_VALUES, None]),
    "RescaleIntercept": st.sampled_from([*_DS_VALUES, None]),
    "Rows": st.sampled_from([0, 1, 11, 13, 24, 65535, None]),
    "Columns": st.sampled_from([0, 1, 13, 15, 7, 65535, None]),
    "BitsAllocated": st.sampled_from([8, 12, 32, 0, None]),
    "BitsStored": st.sampled_from([8, 12, 17, 0, None]),
    "PixelRepresentation": st.sampled_from([0, 1, 2, None]),
    "SamplesPerPixel": st.sampled_from([0, 3, None]),
    "ImagePositionPatient": st.sampled_from([
        ["-10", "20", "-5"], ["-10", "20", "0"], ["-10", "20", "2.5"], ["0", "0", "1e308"],
        ["NaN", "0", "0"], ["-10", "20"], ["-10", "21", "5"], None]),
    "ImageOrientationPatient": st.sampled_from([
        ["1", "0", "0", "0", "1", "0"], ["1", "0", "0", "0", "0", "1"],
        ["1", "0", "0", "1", "0", "0"], ["2", "0", "0", "0", "1", "0"],
        ["0", "1", "0", "1", "0", "0"], ["NaN", "0", "0", "0", "1", "0"], ["1", "0", "0"],
        None]),
    "PixelSpacing": st.sampled_from([["1.25", "1.5"], ["0", "1.5"], ["-1", "1"], ["NaN", "1"],
                                     ["1e308", "1"], ["1"], ["1.25", "1.5", "2"], None]),
    "SeriesInstanceUID": st.sampled_from(["1.2.3.4", "", None]),
    "PatientID": st.sampled_from(["OTHER", "", None]),
    "FrameOfReferenceUID": st.sampled_from(["1.2.3.9", "", None]),
    "Modality": st.sampled_from(["MR", "RTSTRUCT", "OT", "", None]),
    "SOPInstanceUID": st.sampled_from(["1.2.3", "", None]),
    "PixelData": st.sampled_from(["short", "long", "odd", "empty", None]),
}
_RS_EDITS = ["modality", "empty_contours", "offset_contour", "duplicate_contour",
             "many_points", "wrong_roi_number", "geometric_type", "point_count_lie",
             "frame_of_reference", "empty_contour_data", "nan_point", "drop_roi_names"]


def _load(data: bytes) -> pydicom.Dataset:
    return pydicom.dcmread(io.BytesIO(data), force=True)


def _save(ds: pydicom.Dataset) -> bytes:
    """The edited data set as bytes (an edit pydicom cannot write is not a case)."""
    out = io.BytesIO()
    try:
        ds.save_as(out, enforce_file_format=False)
    except Exception:
        assume(False)
    return out.getvalue()


def _edit_image(ds: pydicom.Dataset, keyword: str, value: object, rng_byte: int) -> None:
    if keyword == "PixelData":
        raw = ds.PixelData
        ds.PixelData = {"short": raw[:-2], "long": raw + raw[:48], "odd": raw + b"\x00",
                        "empty": b"", None: raw}[value]
        return
    if value is None:
        if keyword in ds:
            delattr(ds, keyword)
        return
    if keyword in ("RescaleSlope", "RescaleIntercept") and rng_byte % 5 == 0:
        tag = ds.data_element(keyword).tag if keyword in ds else \
            pydicom.datadict.tag_for_keyword(keyword)
        ds[tag] = DataElement(tag, "US", 13613)   # a patched VR
        return
    try:
        setattr(ds, keyword, value)
    except ValueError:   # pydicom refuses to write it at all: not a case
        assume(False)


def _edit_rtstruct(ds: pydicom.Dataset, op: str, n: int) -> None:
    rois = ds.ROIContourSequence
    item = rois[n % len(rois)]
    contours = getattr(item, "ContourSequence", None) or []
    contour = contours[n % len(contours)] if contours else None
    if op == "modality":
        ds.Modality = "CT"
    elif op == "empty_contours":
        ds.ROIContourSequence = []
    elif op == "offset_contour" and contour is not None:
        pts = np.asarray(contour.ContourData, float).reshape(-1, 3) + np.array([1000.0, 0, 0])
        contour.ContourData = [f"{v:g}" for v in pts.ravel()]
    elif op == "duplicate_contour" and contour is not None:
        import copy

        contours.append(copy.deepcopy(contour))
    elif op == "many_points" and contour is not None:
        pts = np.asarray(contour.ContourData, float).reshape(-1, 3)
        many = np.repeat(pts, 50, axis=0) + np.linspace(0, 200, 50 * len(pts))[:, None]
        contour.ContourData = [f"{v:g}" for v in many.ravel()]
        contour.NumberOfContourPoints = len(many)
    elif op == "wrong_roi_number":
        item.ReferencedROINumber = 99
    elif op == "geometric_type" and contour is not None:
        contour.ContourGeometricType = "POINT" if contour.ContourGeometricType != "POINT" \
            else "CLOSED_PLANAR"
    elif op == "point_count_lie" and contour is not None:
        contour.NumberOfContourPoints = int(contour.NumberOfContourPoints) + 7
    elif op == "frame_of_reference":
        ds.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID = "1.2.3.9"
    elif op == "empty_contour_data" and contour is not None:
        contour.ContourData = []
    elif op == "nan_point" and contour is not None:
        data = list(contour.ContourData)
        data[0] = "NaN"
        contour.ContourData = data
    elif op == "drop_roi_names":
        ds.StructureSetROISequence = []


@st.composite
def dicom_edit(draw: st.DrawFn) -> tuple[dict[str, bytes], str]:
    """The case's files after one edit; returns (files, name of the edited file)."""
    files = dict(_FILES)
    kind = draw(st.sampled_from(["image_tag", "image_tag", "image_tag", "rtstruct", "bytes",
                                 "zero", "copy"]))
    name = draw(st.sampled_from([*_SLICES, _RS]))
    if kind == "image_tag" or (kind == "rtstruct" and name != _RS):
        name = draw(st.sampled_from(_SLICES))
        ds = _load(files[name])
        for _ in range(draw(st.integers(1, 2))):
            keyword = draw(st.sampled_from(sorted(_IMAGE_EDITS)))
            _edit_image(ds, keyword, draw(_IMAGE_EDITS[keyword]), draw(st.integers(0, 255)))
        files[name] = _save(ds)
    elif kind == "rtstruct":
        ds = _load(files[_RS])
        _edit_rtstruct(ds, draw(st.sampled_from(_RS_EDITS)), draw(st.integers(0, 50)))
        files[_RS] = _save(ds)
    elif kind == "bytes":
        files[name] = draw(mutated_bytes(files[name], max_edits=3))
    elif kind == "zero":
        files[name] = b""
    else:
        files[f"copy_of_{name}"] = files[name]
    return files, name


# ---------------------------------------------------------------------------- the oracle

def _independent_volume(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """HU (k, j, i) and patient_from_voxel of the image files, from the raw tags."""
    slices = []
    for path in sorted(folder.iterdir()):
        ds = pydicom.dcmread(path, force=True)
        if str(ds.get("Modality", "")) != "CT" or "PixelData" not in ds:
            continue
        iop = np.asarray([float(v) for v in ds.ImageOrientationPatient])
        ipp = np.asarray([float(v) for v in ds.ImagePositionPatient])
        rows, cols = int(ds.Rows), int(ds.Columns)
        assert int(ds.BitsAllocated) == 16 and int(ds.get("SamplesPerPixel", 1)) == 1
        dtype = "<i2" if int(ds.PixelRepresentation) == 1 else "<u2"
        assert len(ds.PixelData) == rows * cols * 2, "pixel data length differs from the size"
        stored = np.frombuffer(ds.PixelData, dtype=dtype).reshape(rows, cols)
        hu = stored * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        slices.append((ipp, iop, [float(v) for v in ds.PixelSpacing], hu))
    normal = np.cross(slices[0][1][:3], slices[0][1][3:])
    slices.sort(key=lambda s: float(s[0] @ normal))
    affine = np.eye(4)
    row_mm, col_mm = slices[0][2]
    affine[:3, 0] = slices[0][1][:3] * col_mm
    affine[:3, 1] = slices[0][1][3:] * row_mm
    affine[:3, 2] = (slices[-1][0] - slices[0][0]) / max(len(slices) - 1, 1)
    affine[:3, 3] = slices[0][0]
    return np.stack([s[3] for s in slices]), affine


def check_dicom(edit: tuple[dict[str, bytes], str]) -> None:
    from models.dicom.reader import read_case

    files, edited = edit
    folder = fresh_folder(_WORK / "case", files)
    with logged_warnings("models.dicom") as warned:
        case = run_case("dicom_import", folder, lambda: read_case(folder))
    if case is None:
        return
    assert case.ct.shape == _SHAPE, f"slices dropped or size changed: {case.ct.shape}"
    hu, affine = _independent_volume(folder)
    np.testing.assert_allclose(case.ct.array, hu, rtol=1e-6, atol=1e-3,
                               err_msg="HU differ from stored x slope + intercept")
    np.testing.assert_allclose(case.ct.patient_from_voxel, affine, atol=1e-4)
    same_geometry = np.allclose(affine, _TRUTH.ct.patient_from_voxel, atol=1e-6)
    if edited != _RS and same_geometry:
        assert sorted(case.structures) == sorted(_TRUTH.structures)
        for name, structure in case.structures.items():
            np.testing.assert_array_equal(structure.mask, _TRUTH.structures[name].mask)
        assert sorted(case.fiducials_lps) == sorted(_TRUTH.fiducials_lps)
    if not case.structures:
        assert any(_RS in line for line in warned), "structure set silently ignored"
    for name, structure in case.structures.items():
        assert structure.mask.any(), f"structure {name} imported empty"
    for name, point in case.fiducials_lps.items():
        assert np.all(np.isfinite(point)) and point.shape == (3,)
        if edited != _RS:
            np.testing.assert_array_equal(point, _TRUTH.fiducials_lps[name])


def _dump(files: dict[str, bytes], edited: str) -> None:
    """Keep a failing case's files in ``IORT_FUZZ_DUMP`` (the last one kept is the
    shrunk example hypothesis reports)."""
    import os

    target = os.environ.get("IORT_FUZZ_DUMP")
    if not target:
        return
    out = Path(target) / "dicom"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for name, data in files.items():
        (out / name).write_bytes(data)
    (out / "EDITED").write_text(edited)


@fuzz_settings()
@given(dicom_edit())
def test_dicom_import(edit) -> None:
    try:
        check_dicom(edit)
    except AssertionError:
        _dump(*edit)
        raise
