"""Scan a folder tree for DICOM files and build validated image volumes from series.

:func:`scan_folder` reads every file's header once (pixel data deferred), sorting files into
image series (grouped by SeriesInstanceUID), structure sets, other objects (RTDOSE,
RTPLAN, SR, DICOMDIR, ...) and non-DICOM files. :func:`read_series` then builds a
:class:`models.patient.volume.Volume` from one series:

* slices are ordered by their position along the slice normal
  ``n = row_dir x col_dir`` (``d = ImagePositionPatient . n``), never by file name or
  InstanceNumber;
* ``patient_from_voxel`` columns are ``row_dir * PixelSpacing[1]``,
  ``col_dir * PixelSpacing[0]``, ``n * slice_spacing``, origin the first sorted position —
  the same geometry ITK/SimpleITK build, oblique orientations included;
* values are ``stored * RescaleSlope + RescaleIntercept`` per slice, float32 (HU for CT,
  intensity for MR); compressed transfer syntaxes are decoded by pydicom's handlers
  (RLE and deflate natively; JPEG, JPEG-LS and JPEG 2000 through the pylibjpeg plugins).

Rejected with :class:`models.base.errors.InputError` naming file, tag and reason: multi-frame or
colour images, missing geometry tags, mixed orientation / size / pixel spacing, duplicate
positions, missing slices (a gap of >= 2 slice spacings), non-uniform spacing (unless
``resample=True``: then linear interpolation onto a uniform grid, with a warning), gantry
tilt / sheared stacks (positions not along the normal), truncated pixel data, undecodable
transfer syntaxes, and whatever would give silently wrong values or geometry:

* Pixel Data (7FE0,0010) whose length differs from Rows x Columns x BitsAllocated/8 (a
  Rows/Columns lie shears the image), bytes after a final Pixel Data element (inserted
  bytes shift the image), or a volume above :data:`MAX_VOXELS` -- checked from the
  headers before any pixel is read or allocated;
* RescaleSlope (0028,1053) / RescaleIntercept (0028,1052) missing on a CT slice (Type 1),
  present on some slices only, not of VR DS (a patched VR turns "-1024" into 12589), slope
  not positive, or beyond :data:`CT_MAX_SLOPE` / :data:`CT_MAX_INTERCEPT` for CT;
* PatientID, StudyInstanceUID, FrameOfReferenceUID, Modality or the pixel format
  (PhotometricInterpretation, BitsAllocated/Stored, HighBit, PixelRepresentation)
  differing between slices of a series (one damaged slice would read with other values);
* a file that may be a slice of the chosen series but cannot be read: an empty ``.dcm``
  file, a ``.dcm`` file that no longer reads as DICOM at all (a damaged preamble), or a
  file cut inside its SeriesInstanceUID (what is left is the start of the series' UID);
  a dropped end slice leaves no gap to detect, and a damaged RTSTRUCT would import as
  "no structures".

Files without the DICM preamble are parsed only when they start like a DICOM data set
(group 0002 or 0008), so a large foreign file costs one 132-byte read.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import UID
from tqdm import tqdm

from models.base.errors import InputError
from models.dicom.common import IMAGE_SOP_CLASSES, RT_STRUCTURE_SET_STORAGE
from models.patient.volume import Volume

log = logging.getLogger(__name__)

#: Orientation cosines may differ by this much between slices of one series.
ORIENTATION_TOL = 1e-4
#: Absolute tolerance (mm) on positions: in-plane drift (tilt) and spacing uniformity.
POSITION_TOL_MM = 0.01
#: Relative tolerance on slice spacing uniformity (fraction of the median spacing).
SPACING_REL_TOL = 0.01

_DEFER = 16 * 1024  # bytes: larger values (pixel data) are read only when needed
#: Largest volume imported (voxels); 2**30 float32 voxels are 4 GiB.
MAX_VOXELS = 2 ** 30
#: CT rescale bounds: HU = stored * slope + intercept with 0 < slope <= this ...
CT_MAX_SLOPE = 100.0
#: ... and |intercept| <= this (HU).
CT_MAX_INTERCEPT = 10_000.0
#: Rescale bounds for other modalities (MR, PET intensities).
OTHER_MAX_RESCALE = 1e10
#: Attributes every slice of one series must share, with their tags.
SAME_IN_SERIES = (("PatientID", "(0010,0020)"), ("StudyInstanceUID", "(0020,000D)"),
                  ("FrameOfReferenceUID", "(0020,0052)"), ("Modality", "(0008,0060)"),
                  ("PhotometricInterpretation", "(0028,0004)"),
                  ("BitsAllocated", "(0028,0100)"), ("BitsStored", "(0028,0101)"),
                  ("HighBit", "(0028,0102)"), ("PixelRepresentation", "(0028,0103)"))
_RESCALE_TAGS = {"RescaleSlope": "(0028,1053)", "RescaleIntercept": "(0028,1052)"}
_DICOM_SUFFIXES = {"", ".dcm", ".dicom", ".ima"}
_NAMED_DICOM = {".dcm", ".dicom", ".ima"}
_PIXEL_DATA = 0x7FE00010
_NATIVE_SYNTAXES = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2",
                    "1.2.840.10008.1.2.1.99"}
_DICOMDIR_CLASS = "1.2.840.10008.1.3.10"


@dataclass
class SliceFile:
    """One single-frame image file: its header (pixel data deferred) and key geometry."""

    path: Path
    dataset: Dataset
    series_uid: str
    sop_instance_uid: str
    modality: str


@dataclass
class FolderScan:
    """What a folder tree holds.

    Attributes
    ----------
    series : dict of str to list of SliceFile
        Image files by SeriesInstanceUID (unsorted).
    structure_sets : list of Path
        RTSTRUCT files.
    other : list of tuple(Path, str)
        Other DICOM objects (path, modality or SOP class), e.g. RTDOSE, RTPLAN, DICOMDIR.
    unreadable : list of tuple(Path, str, str)
        Files that start like DICOM but cannot be used (path, reason, SeriesInstanceUID or
        "" when even that is unreadable).
    skipped : int
        Non-DICOM files ignored.
    """

    series: dict[str, list[SliceFile]] = field(default_factory=dict)
    structure_sets: list[Path] = field(default_factory=list)
    other: list[tuple[Path, str]] = field(default_factory=list)
    unreadable: list[tuple[Path, str, str]] = field(default_factory=list)
    skipped: int = 0

    def describe_series(self) -> list[str]:
        """One line per image series: UID, modality, slice count, description."""
        lines = []
        for uid, files in self.series.items():
            ds = files[0].dataset
            lines.append(f"{uid} ({files[0].modality}, {len(files)} files, "
                         f"{getattr(ds, 'SeriesDescription', '') or 'no description'})")
        return lines


@dataclass
class ImageSeries:
    """A validated image series.

    Attributes
    ----------
    volume : Volume
        float32 values (HU / intensity), ``patient_from_voxel`` to LPS mm.
    modality : str
        CT, MR, ...
    series_uid, study_uid, frame_of_reference_uid : str
        UIDs from the files.
    instance_uids : list of str
        SOPInstanceUID per slice k (empty strings for slices made by resampling).
    files : list of Path
        File per slice k (sorted along the normal).
    first : Dataset
        Header of the first slice (patient/study attributes).
    warnings : list of str
        E.g. that the series was resampled.
    """

    volume: Volume
    modality: str
    series_uid: str
    study_uid: str
    frame_of_reference_uid: str
    instance_uids: list[str]
    files: list[Path]
    first: Dataset
    warnings: list[str] = field(default_factory=list)


def _iter_files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise InputError(f"{root}: no such file or folder")
    return sorted(p for p in root.rglob("*") if p.is_file())


def _sniff(path: Path) -> tuple[bool, bool]:
    """(has the DICM preamble, may be a DICOM data set at all) from the first 132 bytes.

    A file without the preamble is worth a forced parse only when it starts with a tag of
    group 0002 or 0008 (little or big endian), as ACR-NEMA style files do.
    """
    try:
        with path.open("rb") as handle:
            head = handle.read(132)
    except OSError:
        return False, False
    if len(head) == 132 and head[128:132] == b"DICM":
        return True, True
    plausible = len(head) >= 8 and head[:2] in (b"\x02\x00", b"\x08\x00", b"\x00\x08")
    return False, plausible


def _read_header(path: Path) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path, defer_size=_DEFER, force=True)


def scan_folder(root: str | Path, *, progress: bool = False) -> FolderScan:
    """Classify every file below ``root`` (nested folders, with or without DICOMDIR).

    Parameters
    ----------
    root : str or Path
        Folder (searched recursively) or a single file.
    progress : bool
        Show a progress bar.

    Returns
    -------
    FolderScan
    """
    root = Path(root)
    scan = FolderScan()
    with warnings.catch_warnings():  # odd values are reported by our own checks
        warnings.simplefilter("ignore")
        for path in tqdm(_iter_files(root), desc="scanning files", unit="file",
                         disable=not progress, leave=False):
            _classify(path, scan)
    log.info("scanned %s: %d image series, %d structure sets, %d other, %d unreadable",
             root, len(scan.series), len(scan.structure_sets), len(scan.other),
             len(scan.unreadable))
    return scan


def _not_dicom(path: Path, scan: FolderScan) -> None:
    """Skip a foreign file; one named like DICOM (``.dcm``) is damage, never skipped."""
    if path.suffix.lower() in _NAMED_DICOM:
        scan.unreadable.append((path, "named like a DICOM file but not readable as one (no "
                                      "DICM preamble, no data set): damaged or cut", ""))
    else:
        scan.skipped += 1


def _classify(path: Path, scan: FolderScan) -> None:
    """Read one file's header and file it under series / structure sets / other / skipped."""
    try:
        size = path.stat().st_size
    except OSError:
        size = -1
    if size == 0:
        if path.suffix.lower() in _DICOM_SUFFIXES:  # an interrupted copy of a slice?
            scan.unreadable.append((path, "empty file (0 bytes)", ""))
        else:
            scan.skipped += 1
        return
    has_magic, plausible = _sniff(path)
    if not plausible:
        _not_dicom(path, scan)
        return
    try:
        ds = _read_header(path)
        meta = getattr(ds, "file_meta", None)
        sop_class = str(getattr(ds, "SOPClassUID", "") or
                        getattr(meta, "MediaStorageSOPClassUID", "") or "")
        modality = str(getattr(ds, "Modality", "") or "")
        has_pixels = "PixelData" in ds
        is_structure_set = (modality == "RTSTRUCT" or sop_class == RT_STRUCTURE_SET_STORAGE
                            or "ROIContourSequence" in ds or "StructureSetROISequence" in ds)
        is_dicomdir = sop_class == _DICOMDIR_CLASS or "DirectoryRecordSequence" in ds
        series_uid = str(getattr(ds, "SeriesInstanceUID", "") or "")
        instance_uid = str(getattr(ds, "SOPInstanceUID", "") or "")
    except Exception as exc:  # damaged files raise many exception types
        if has_magic:
            scan.unreadable.append((path, f"{type(exc).__name__}: {exc}", ""))
        else:
            _not_dicom(path, scan)
        return
    if not has_magic and not sop_class and not modality:
        _not_dicom(path, scan)  # forced parse of a non-DICOM file
        return
    image_like = sop_class in IMAGE_SOP_CLASSES or modality in ("CT", "MR", "PT")
    if is_structure_set:  # even with a damaged Modality: the reader refuses it loudly
        scan.structure_sets.append(path)
    elif has_magic and not has_pixels and (image_like or not modality) and not is_dicomdir:
        what = "image without Pixel Data (7FE0,0010)" if image_like else \
            "no Modality (0008,0060)"
        scan.unreadable.append((path, f"incomplete DICOM file: {what}", series_uid))
    elif is_dicomdir:
        scan.other.append((path, "DICOMDIR"))
    elif has_pixels and modality != "RTDOSE":
        if not series_uid:
            scan.unreadable.append((path, "image without SeriesInstanceUID (0020,000E)", ""))
            return
        scan.series.setdefault(series_uid, []).append(
            SliceFile(path, ds, series_uid, instance_uid, modality or "OT"))
    else:
        scan.other.append((path, modality or sop_class or "unknown"))


def _floats(ds: Dataset, keyword: str, count: int, path: Path) -> np.ndarray:
    """A numeric attribute as ``count`` finite floats, or InputError naming file and tag."""
    tag_text = {"ImageOrientationPatient": "(0020,0037)", "ImagePositionPatient": "(0020,0032)",
                "PixelSpacing": "(0028,0030)"}.get(keyword, "")
    try:
        value = ds[keyword].value
        values = np.asarray(list(value) if not isinstance(value, str | bytes) else
                            str(value).split("\\"), dtype=np.float64).ravel()
    except KeyError:
        raise InputError(f"{path}: missing {keyword} {tag_text}: not a cross-sectional image "
                         "with patient geometry") from None
    except Exception as exc:
        raise InputError(f"{path}: unreadable {keyword} {tag_text} ({exc})") from exc
    if values.size != count or not np.all(np.isfinite(values)):
        raise InputError(f"{path}: {keyword} {tag_text} must hold {count} numbers, got "
                         f"{values.tolist()}")
    return values


def _int_attr(ds: Dataset, keyword: str, path: Path, default: int | None = None) -> int:
    try:
        value = ds[keyword].value
        return int(value)
    except KeyError:
        if default is None:
            raise InputError(f"{path}: missing {keyword} (Type 1 in an image); re-export "
                             "the series") from None
        return default
    except Exception as exc:
        raise InputError(f"{path}: unreadable {keyword} ({exc})") from exc


def _float_attr(ds: Dataset, keyword: str, path: Path, default: float) -> float:
    try:
        value = ds[keyword].value
    except KeyError:
        return default
    if isinstance(value, list | tuple | pydicom.multival.MultiValue):
        if len(value) != 1:   # one value (VM 1): which of several would be a guess
            raise InputError(f"{path}: {keyword} holds {len(value)} values, not one: the "
                             "file is damaged; re-export the series")
        value = value[0]
    try:
        if value is None or value == "":
            return default
        out = float(value)
    except Exception as exc:
        raise InputError(f"{path}: unreadable {keyword} ({exc})") from exc
    if not np.isfinite(out):
        raise InputError(f"{path}: {keyword} is not finite")
    return out


def _check_same_series(f: SliceFile, first: SliceFile) -> None:
    """Refuse a slice of another patient, study, frame or pixel format than the first."""
    for keyword, tag in SAME_IN_SERIES:
        try:
            mine = str(f.dataset.get(keyword, "") or "").strip()
            theirs = str(first.dataset.get(keyword, "") or "").strip()
        except Exception as exc:  # a damaged VR or length surfaces on access
            raise InputError(f"{f.path}: unreadable {keyword} {tag} ({type(exc).__name__}: "
                             f"{exc}); re-export the series") from exc
        if mine != theirs:
            raise InputError(f"{f.path}: {keyword} {tag} {mine!r} differs from "
                             f"{first.path.name} {theirs!r} in the same series; remove the "
                             "foreign slice")


def _check_pixel_length(f: SliceFile, rows: int, cols: int) -> None:
    """Pixel Data length against Rows x Columns, from the header (nothing read yet)."""
    ds = f.dataset
    syntax = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or
                 "1.2.840.10008.1.2")
    bits = _int_attr(ds, "BitsAllocated", f.path)
    raw = ds.get_item(_PIXEL_DATA)
    if syntax not in _NATIVE_SYNTAXES or bits not in (8, 16, 32) or raw is None:
        return  # encapsulated or packed: the decoder checks the shape
    length = raw.length if getattr(raw, "value", None) is None else len(raw.value)
    if length == 0xFFFFFFFF:
        return
    nbytes = rows * cols * bits // 8
    if length < nbytes:
        raise InputError(f"{f.path}: truncated pixel data (7FE0,0010): {length} of {nbytes} "
                         f"bytes for Rows x Columns {rows}x{cols} (a cut file, or Rows "
                         "(0028,0010) / Columns (0028,0011) is wrong)")
    _check_nothing_after_pixels(f, raw, length)
    if length > nbytes + nbytes % 2:
        raise InputError(f"{f.path}: Pixel Data (7FE0,0010) holds {length} bytes but Rows "
                         f"(0028,0010) x Columns (0028,0011) = {rows}x{cols} at {bits} bits "
                         f"needs {nbytes}: Rows or Columns is wrong (the image would be "
                         "sheared); re-export the series")


def _check_nothing_after_pixels(f: SliceFile, raw: object, length: int) -> None:
    """Refuse bytes after a final Pixel Data element: inserted or appended damage.

    Bytes inserted inside the pixel values shift every later pixel (a sheared image) and
    leave the surplus after the element, too short or too odd to be one; pydicom ignores
    them, so the file size is compared with where the element ends.
    """
    start = getattr(raw, "value_tell", None)  # raw element; a deferred one has file_tell
    start = getattr(raw, "file_tell", None) if start is None else start
    if start is None or any(tag > _PIXEL_DATA for tag in f.dataset.keys()):
        return
    try:
        size = f.path.stat().st_size
    except OSError:
        return
    surplus = size - (int(start) + length)
    if surplus > 0:
        raise InputError(f"{f.path}: {surplus} byte(s) after Pixel Data (7FE0,0010), which "
                         "should end the file: bytes were inserted or appended (the image "
                         "would be shifted); re-export the series")


def _rescale_value(f: SliceFile, keyword: str, required: bool) -> float | None:
    """RescaleSlope or RescaleIntercept of one slice, None when absent and optional."""
    tag = _RESCALE_TAGS[keyword]
    try:
        element = f.dataset[keyword] if keyword in f.dataset else None
    except Exception as exc:  # a damaged VR or length surfaces on access
        raise InputError(f"{f.path}: unreadable {keyword} {tag} ({type(exc).__name__}: "
                         f"{exc}); re-export the series") from exc
    if element is None or element.value is None or element.value == "":
        if required:
            raise InputError(f"{f.path}: missing {keyword} {tag} (Type 1 in a CT image): "
                             "its HU would be wrong; re-export the series")
        return None
    if element.VR != "DS":
        raise InputError(f"{f.path}: {keyword} {tag} has VR {element.VR}, not DS: "
                         "the file is damaged; re-export the series")
    return _float_attr(f.dataset, keyword, f.path, 0.0)


def _rescales(files: list[SliceFile]) -> list[tuple[float, float]]:
    """Validated (slope, intercept) per slice; see the module docstring for what is refused."""
    ct = files[0].modality == "CT"
    max_slope = CT_MAX_SLOPE if ct else OTHER_MAX_RESCALE
    max_intercept = CT_MAX_INTERCEPT if ct else OTHER_MAX_RESCALE
    out: list[tuple[float, float]] = []
    present: dict[str, bool] = {}
    for f in files:
        values = {}
        for keyword, default in (("RescaleSlope", 1.0), ("RescaleIntercept", 0.0)):
            value = _rescale_value(f, keyword, ct)
            here = value is not None
            if present.setdefault(keyword, here) != here:
                raise InputError(f"{f.path}: {keyword} {_RESCALE_TAGS[keyword]} is "
                                 f"{'present' if here else 'missing'} here but not in "
                                 f"{files[0].path.name}: values would be wrong on some slices")
            values[keyword] = default if value is None else value
        slope, intercept = values["RescaleSlope"], values["RescaleIntercept"]
        if not 0.0 < slope <= max_slope:
            raise InputError(f"{f.path}: RescaleSlope (0028,1053) {slope:g} is outside "
                             f"(0, {max_slope:g}]; re-export the series")
        if abs(intercept) > max_intercept:
            raise InputError(f"{f.path}: RescaleIntercept (0028,1052) {intercept:g} is "
                             f"outside +-{max_intercept:g}; re-export the series")
        out.append((slope, intercept))
    return out


@dataclass(frozen=True)
class _Geometry:
    row_dir: np.ndarray
    col_dir: np.ndarray
    normal: np.ndarray
    pixel_spacing: np.ndarray  # (row spacing, column spacing)
    rows: int
    cols: int


def _series_geometry(files: list[SliceFile]) -> tuple[_Geometry, np.ndarray]:
    """Common plane geometry of a series and each file's position (N, 3)."""
    first = files[0]
    iop0 = _floats(first.dataset, "ImageOrientationPatient", 6, first.path)
    ps0 = _floats(first.dataset, "PixelSpacing", 2, first.path)
    if np.any(ps0 <= 0):
        raise InputError(f"{first.path}: PixelSpacing (0028,0030) must be positive, got {ps0}")
    rows0 = _int_attr(first.dataset, "Rows", first.path)
    cols0 = _int_attr(first.dataset, "Columns", first.path)
    if rows0 <= 0 or cols0 <= 0:
        raise InputError(f"{first.path}: Rows/Columns must be positive, got {rows0}x{cols0}")
    row_dir, col_dir = iop0[:3], iop0[3:]
    if abs(np.linalg.norm(row_dir) - 1) > 1e-3 or abs(np.linalg.norm(col_dir) - 1) > 1e-3 \
            or abs(row_dir @ col_dir) > 1e-3:
        raise InputError(f"{first.path}: ImageOrientationPatient (0020,0037) is not two "
                         f"orthogonal unit vectors: {iop0.tolist()}")
    row_dir = row_dir / np.linalg.norm(row_dir)
    col_dir = col_dir - (col_dir @ row_dir) * row_dir
    col_dir = col_dir / np.linalg.norm(col_dir)
    positions = np.empty((len(files), 3))
    for n, f in enumerate(files):
        frames = _int_attr(f.dataset, "NumberOfFrames", f.path, default=1)
        if frames != 1:
            raise InputError(f"{f.path}: multi-frame image (NumberOfFrames {frames}) is not "
                             "supported; export the series as single-frame slices")
        spp = _int_attr(f.dataset, "SamplesPerPixel", f.path, default=1)
        if spp != 1:
            raise InputError(f"{f.path}: colour image (SamplesPerPixel {spp}) is not a CT/MR "
                             "slice")
        iop = _floats(f.dataset, "ImageOrientationPatient", 6, f.path)
        if np.max(np.abs(iop - iop0)) > ORIENTATION_TOL:
            raise InputError(f"{f.path}: ImageOrientationPatient (0020,0037) {iop.tolist()} "
                             f"differs from {first.path.name} {iop0.tolist()}: mixed "
                             "orientations in one series")
        ps = _floats(f.dataset, "PixelSpacing", 2, f.path)
        if np.max(np.abs(ps - ps0)) > 1e-4:
            raise InputError(f"{f.path}: PixelSpacing (0028,0030) {ps.tolist()} differs from "
                             f"{first.path.name} {ps0.tolist()}")
        rows = _int_attr(f.dataset, "Rows", f.path)
        cols = _int_attr(f.dataset, "Columns", f.path)
        if (rows, cols) != (rows0, cols0):
            raise InputError(f"{f.path}: image size {rows}x{cols} differs from "
                             f"{first.path.name} {rows0}x{cols0}")
        positions[n] = _floats(f.dataset, "ImagePositionPatient", 3, f.path)
        _check_same_series(f, first)
        _check_pixel_length(f, rows, cols)
    normal = np.cross(row_dir, col_dir)
    return _Geometry(row_dir, col_dir, normal, ps0, rows0, cols0), positions


def _slice_spacing(files: list[SliceFile], geom: _Geometry, positions: np.ndarray,
                   resample: bool) -> tuple[float, list[str], np.ndarray | None]:
    """Validate sorted positions; return spacing, warnings, and target d's if resampling."""
    d = positions @ geom.normal
    if len(files) == 1:
        ds = files[0].dataset
        spacing = _float_attr(ds, "SpacingBetweenSlices", files[0].path,
                              _float_attr(ds, "SliceThickness", files[0].path, 1.0))
        return (spacing if spacing > 0 else 1.0), [], None
    steps = np.diff(d)
    dup = np.flatnonzero(steps < POSITION_TOL_MM)
    if dup.size:
        a, b = files[dup[0]].path, files[dup[0] + 1].path
        raise InputError(f"{b}: duplicate slice: same position along the slice normal "
                         f"({d[dup[0]]:.3f} mm) as {a.name}; remove one of them")
    # in-plane drift of positions = gantry tilt or a sheared stack
    offsets = positions - positions[0]
    in_plane = offsets - np.outer(offsets @ geom.normal, geom.normal)
    drift = np.linalg.norm(in_plane, axis=1)
    worst = int(np.argmax(drift))
    if drift[worst] > POSITION_TOL_MM + 1e-4 * abs(d[worst] - d[0]):
        tilt = files[worst].dataset.get("GantryDetectorTilt", None)
        tilt_txt = f", GantryDetectorTilt (0018,1120) = {tilt}" if tilt not in (None, "") else ""
        raise InputError(f"{files[worst].path}: ImagePositionPatient (0020,0032) drifts "
                         f"{drift[worst]:.2f} mm within the image plane from "
                         f"{files[0].path.name}: gantry tilt or sheared stack{tilt_txt}; "
                         "resample it to an orthogonal grid first")
    spacing = float(np.median(steps))
    tol = max(POSITION_TOL_MM, SPACING_REL_TOL * spacing)
    ratio = steps / spacing
    gaps = np.flatnonzero((ratio > 1.5) & (np.abs(ratio - np.rint(ratio)) * spacing <= tol))
    if gaps.size:
        g = gaps[0]
        missing = int(np.rint(ratio[g])) - 1
        raise InputError(f"{files[g + 1].path}: {missing} slice(s) missing between "
                         f"{files[g].path.name} and {files[g + 1].path.name} (gap "
                         f"{steps[g]:.3f} mm, spacing {spacing:.3f} mm)")
    if np.max(np.abs(steps - spacing)) <= tol:
        exact = float((d[-1] - d[0]) / (len(d) - 1))
        return exact, [], None
    bad = int(np.argmax(np.abs(steps - spacing)))
    message = (f"non-uniform slice spacing: {steps.min():.3f} to {steps.max():.3f} mm "
               f"(e.g. {steps[bad]:.3f} mm between {files[bad].path.name} and "
               f"{files[bad + 1].path.name})")
    if not resample:
        raise InputError(f"{files[bad + 1].path}: {message}; pass --resample to interpolate "
                         "onto a uniform grid")
    step = float(steps.min())
    count = int(np.floor((d[-1] - d[0]) / step + 1e-6)) + 1
    target = d[0] + step * np.arange(count)
    warning = f"{message}; resampled linearly to {count} slices of {step:.3f} mm"
    log.warning("%s", warning)
    return step, [warning], target


def _pixels(f: SliceFile, rows: int, cols: int) -> np.ndarray:
    """Stored pixel values of one slice as a (rows, cols) array."""
    ds = f.dataset
    syntax = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or
                 "1.2.840.10008.1.2")
    try:
        bits = _int_attr(ds, "BitsAllocated", f.path)
        stored = _int_attr(ds, "BitsStored", f.path, default=bits)
        # Type 1: a default would read signed stored values as unsigned (HU off by 65,536)
        signed = _int_attr(ds, "PixelRepresentation", f.path) == 1
        if syntax in _NATIVE_SYNTAXES and bits in (8, 16, 32) and (not signed or
                                                                    stored == bits):
            data = ds.PixelData
            nbytes = rows * cols * bits // 8
            if len(data) < nbytes:
                raise InputError(f"{f.path}: truncated pixel data (7FE0,0010): {len(data)} of "
                                 f"{nbytes} bytes")
            if len(data) > nbytes + nbytes % 2:
                raise InputError(f"{f.path}: Pixel Data (7FE0,0010) holds {len(data)} bytes, "
                                 f"Rows x Columns {rows}x{cols} needs {nbytes}")
            kind = ("i" if signed else "u") + str(bits // 8)
            order = ">" if syntax == "1.2.840.10008.1.2.2" else "<"
            arr = np.frombuffer(data, dtype=np.dtype(order + kind), count=rows * cols)
            return arr.reshape(rows, cols)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr = ds.pixel_array
    except InputError:
        raise
    except Exception as exc:
        name = UID(syntax).name if syntax else "unknown"
        raise InputError(f"{f.path}: cannot decode pixel data (7FE0,0010) with transfer syntax "
                         f"{name} ({type(exc).__name__}: {exc})") from exc
    if arr.shape != (rows, cols):
        raise InputError(f"{f.path}: pixel data shape {arr.shape} differs from Rows x Columns "
                         f"{rows}x{cols}")
    return arr


def read_series(files: Iterable[SliceFile], *, resample: bool = False,
                progress: bool = False) -> ImageSeries:
    """Validate one series and build its volume.

    Parameters
    ----------
    files : iterable of SliceFile
        The files of one series (from :func:`scan_folder`), any order.
    resample : bool
        Interpolate a non-uniformly spaced series onto a uniform grid (warning) instead of
        rejecting it.
    progress : bool
        Show a progress bar while reading pixels.

    Returns
    -------
    ImageSeries

    Raises
    ------
    InputError
        See the module docstring for what is rejected.
    """
    files = list(files)
    try:
        with warnings.catch_warnings():  # odd values are validated here, not warned about
            warnings.simplefilter("ignore")
            return _read_series(files, resample, progress)
    except InputError:
        raise
    except Exception as exc:  # malformed attributes surface as many exception types
        where = files[0].path.parent if files else "series"
        raise InputError(f"{where}: malformed image series ({type(exc).__name__}: {exc})"
                         ) from exc


def _read_series(files: list[SliceFile], resample: bool, progress: bool) -> ImageSeries:
    if not files:
        raise InputError("empty series: no image files")
    uids = {f.series_uid for f in files}
    if len(uids) != 1:
        raise InputError(f"files from {len(uids)} different series given to read_series")
    geom, positions = _series_geometry(files)
    order = np.argsort(positions @ geom.normal, kind="stable")
    files = [files[n] for n in order]
    positions = positions[order]
    spacing, notes, target = _slice_spacing(files, geom, positions, resample)
    voxels = len(files) * geom.rows * geom.cols
    if voxels > MAX_VOXELS:
        raise InputError(f"{files[0].path}: {len(files)} slices of Rows x Columns "
                         f"{geom.rows}x{geom.cols} are {voxels} voxels, more than {MAX_VOXELS}"
                         "; Rows (0028,0010) / Columns (0028,0011) are wrong or the series "
                         "needs cropping")
    rescales = _rescales(files)
    volume = _read_pixels(files, geom, rescales, progress)
    instance_uids = [f.sop_instance_uid for f in files]
    if target is not None:
        d = positions @ geom.normal
        volume = _resample_slices(volume, d, target)
        instance_uids = [""] * len(target)
    affine = np.eye(4)
    affine[:3, 0] = geom.row_dir * geom.pixel_spacing[1]
    affine[:3, 1] = geom.col_dir * geom.pixel_spacing[0]
    affine[:3, 2] = geom.normal * spacing
    affine[:3, 3] = positions[0]
    first = files[0].dataset
    return ImageSeries(
        volume=Volume(volume, affine), modality=files[0].modality,
        series_uid=files[0].series_uid, study_uid=str(getattr(first, "StudyInstanceUID", "")),
        frame_of_reference_uid=str(getattr(first, "FrameOfReferenceUID", "")),
        instance_uids=instance_uids, files=[f.path for f in files], first=first,
        warnings=notes)


def _read_pixels(files: list[SliceFile], geom: _Geometry,
                 rescales: list[tuple[float, float]], progress: bool) -> np.ndarray:
    """Rescaled float32 pixel values of sorted slices, shape (nk, rows, cols)."""
    nk = len(files)
    volume = np.empty((nk, geom.rows, geom.cols), dtype=np.float32)
    for k, f in enumerate(tqdm(files, desc="reading slices", unit="slice",
                               disable=not progress, leave=False)):
        stored = _pixels(f, geom.rows, geom.cols)
        slope, intercept = rescales[k]
        if slope == 1.0 and intercept == 0.0:
            volume[k] = stored
        elif slope == 1.0:
            np.add(stored, intercept, out=volume[k], dtype=np.float32, casting="unsafe")
        else:
            volume[k] = stored.astype(np.float64) * slope + intercept
    return volume


def _resample_slices(volume: np.ndarray, d: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Linear interpolation along k from positions ``d`` to ``target`` (both ascending)."""
    upper = np.clip(np.searchsorted(d, target, side="right"), 1, len(d) - 1)
    lower = upper - 1
    w = ((target - d[lower]) / (d[upper] - d[lower])).astype(np.float32)
    w = np.clip(w, 0.0, 1.0)[:, None, None]
    return (volume[lower] * (1 - w) + volume[upper] * w).astype(np.float32)


def read_image_folder(root: str | Path, *, series_uid: str | None = None,
                      resample: bool = False, progress: bool = False) -> ImageSeries:
    """Scan ``root`` and read its one image series (or the one named by ``series_uid``)."""
    scan = scan_folder(root, progress=progress)
    return read_series(select_series(scan, root, series_uid), resample=resample,
                       progress=progress)


def _may_be_of(damaged_uid: str, chosen: str | None, scan: FolderScan, *,
               chosen_by_user: bool) -> bool:
    """Whether a damaged file (SeriesInstanceUID ``damaged_uid`` as far as it could be
    read) may be a slice of the series ``chosen``. Damage cuts, shifts or runs on a UID in
    any way, so when the folder's only series was taken, every damaged file blocks unless
    it is of another series found intact; with ``--series`` given, those whose UID is
    unknown or a part of the chosen one (or it of theirs)."""
    if chosen is None or not damaged_uid or damaged_uid == chosen:
        return True
    if not chosen_by_user:
        return damaged_uid not in scan.series
    return damaged_uid in chosen or chosen in damaged_uid


def select_series(scan: FolderScan, root: str | Path, series_uid: str | None
                  ) -> list[SliceFile]:
    """The files of the requested series; InputError listing the choices if ambiguous.

    An unusable file blocks the import when it may belong to the chosen series (same
    SeriesInstanceUID or any other that is not the UID of another series found in the
    folder -- damage cuts, shifts or runs on the UID --, or one that cannot be read): a
    missing slice at either end of a stack could not be detected otherwise.
    """
    if not scan.series and not scan.unreadable:
        found = ", ".join(sorted({m for _, m in scan.other})) or "no DICOM objects"
        raise InputError(f"{root}: no image series found ({found}"
                         f"{', RTSTRUCT' if scan.structure_sets else ''})")
    if series_uid is not None and series_uid not in scan.series:
        raise InputError(f"{root}: no series {series_uid}; found: "
                         + ("; ".join(scan.describe_series()) or "none"))
    if series_uid is None and len(scan.series) > 1:
        listed = "; ".join(scan.describe_series())   # damaged UIDs may hold line breaks
        raise InputError(f"{root}: {len(scan.series)} image series found, choose one with "
                         "--series UID: " + listed.encode("unicode_escape").decode("ascii"))
    chosen = series_uid if series_uid is not None else next(iter(scan.series), None)
    blocking = [u for u in scan.unreadable if _may_be_of(u[2], chosen, scan,
                                                          chosen_by_user=series_uid is not None)]
    if blocking:
        path, reason, _ = blocking[0]
        more = f" (and {len(blocking) - 1} more)" if len(blocking) > 1 else ""
        raise InputError(f"{path}: unusable DICOM file{more}: {reason}; remove or "
                         "replace it and import again")
    if chosen is None:
        raise InputError(f"{root}: no usable image series found")
    return scan.series[chosen]
