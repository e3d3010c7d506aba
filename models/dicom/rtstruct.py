"""RT Structure Set: write a case's structures and fiducials, read them back as labelmaps.

Writing (:func:`write_rtstruct`)
    Every structure becomes an ROI with ``CLOSED_PLANAR`` contours, one or more per slice
    (outer boundaries and holes), extracted at the 0.5 iso-line of its mask
    (:func:`models.patient.anatomy.mask_to_contours`) and referencing its CT slice in
    ContourImageSequence; every fiducial becomes an ROI of RTROIInterpretedType ``MARKER``
    with one ``POINT`` contour. Modules: Patient, General Study, RT Series, General
    Equipment, Structure Set, ROI Contour, RT ROI Observations, SOP Common (PS3.3 A.19).

Reading (:func:`read_rtstruct`)
    ``CLOSED_PLANAR`` contours are rasterised on the image grid with the **even-odd rule**
    applied to all contours of an ROI on one slice together, so holes and several islands
    per slice come out right; a voxel is inside when its centre is. ``POINT`` contours
    become fiducials (ROIs with only points; a marker is one point, an ROI with several
    points is refused rather than averaged). Contours off the image grid (more than half a
    slice away from every slice plane) are skipped with a warning; a contour repeated on
    the same slice is read once (with a warning) instead of erasing itself by the even-odd
    rule; an ROI that encloses no voxel centre is left out (with a warning), so a target
    drawn off the image is missing rather than present and empty.

    Refused (:class:`models.base.errors.InputError` naming file and tag): a Modality
    (0008,0060) other than RTSTRUCT, a SOP Class UID (0008,0016) other than RT Structure
    Set Storage, and a structure set whose ROIContourSequence (3006,0039) is empty or
    missing (a damaged or truncated export would otherwise import as "no structures").
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydicom.dataset import Dataset

from models.base.errors import InputError
from models.dicom.common import (
    RT_STRUCTURE_SET_STORAGE,
    add_equipment,
    add_frame_of_reference,
    add_patient_study,
    add_series,
    identity_of,
    new_dataset,
    new_uid,
    now_date_time,
    read_dataset,
    referenced_image_sequence,
    set_ds_array,
    write_dataset,
)
from models.patient.case import Case, Structure
from models.patient.volume import Volume

if TYPE_CHECKING:  # pragma: no cover
    from models.dicom.deidentify import Deidentifier

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- writing
def write_rtstruct(case: Case, path: str | Path, *, structures: Iterable[Structure] | None = None,
                   fiducials: dict[str, np.ndarray] | None = None, label: str = "IORT",
                   series_instance_uid: str | None = None,
                   sop_instance_uid: str | None = None, series_number: int = 2,
                   deidentifier: Deidentifier | None = None) -> Path:
    """Write an RTSTRUCT for ``case`` (its CT series must already have UIDs).

    Parameters
    ----------
    case : Case
        Supplies the CT grid, identity, frame of reference and slice instance UIDs
        (``case.image_instance_uids``; write the image series first, e.g. with
        :func:`models.dicom.writer.write_case`).
    path : str or Path
        Output file.
    structures : iterable of Structure, optional
        What to write (default: all of ``case.structures``). New or edited structures
        (a retracted organ, an applicator-defined target) must be on the CT grid.
    fiducials : dict, optional
        Name -> (3,) LPS mm points (default: ``case.fiducials_lps``).
    label : str
        StructureSetLabel.
    series_instance_uid, sop_instance_uid : str, optional
        UIDs of the new object (new random ones by default).
    series_number : int
        SeriesNumber of the RT series.
    deidentifier : models.dicom.deidentify.Deidentifier, optional
        Write the object de-identified (PS3.15 Basic Profile, keyed UIDs and pseudonyms).

    Returns
    -------
    Path
        The file written.
    """
    if len(case.image_instance_uids) != case.ct.shape[0]:
        raise InputError("case.image_instance_uids is not set: write or import the image "
                         "series before its structure set")
    items = list(case.structures.values()) if structures is None else list(structures)
    points = case.fiducials_lps if fiducials is None else fiducials
    identity = identity_of(case)
    image_class = _image_sop_class(case)
    ds = new_dataset(RT_STRUCTURE_SET_STORAGE, sop_instance_uid or new_uid(),
                     modality="RTSTRUCT")
    add_patient_study(ds, identity)
    add_series(ds, series_instance_uid or new_uid(), series_number=series_number,
               description=label)
    add_frame_of_reference(ds, identity)
    add_equipment(ds)
    ds.StructureSetLabel = label[:16]
    ds.StructureSetName = label[:64]
    ds.StructureSetDate, ds.StructureSetTime = now_date_time()
    ds.InstanceNumber = 1
    ds.ReferencedFrameOfReferenceSequence = [_referenced_frame_of_reference(case, image_class)]

    roi_seq, contour_seq, obs_seq = [], [], []
    number = 0
    for structure in items:
        number += 1
        _add_roi(roi_seq, contour_seq, obs_seq, number, structure.name, structure.color_rgb,
                 structure.roi_type, _structure_contours(case, structure, image_class),
                 case.frame_of_reference_uid)
    for name, point in points.items():
        number += 1
        _add_roi(roi_seq, contour_seq, obs_seq, number, name, (255, 255, 0), "MARKER",
                 [_fiducial_contour(case, point, image_class)], case.frame_of_reference_uid)
    ds.StructureSetROISequence = roi_seq
    ds.ROIContourSequence = contour_seq
    ds.RTROIObservationsSequence = obs_seq
    ds.ApprovalStatus = "UNAPPROVED"
    return write_dataset(ds, path, deidentifier=deidentifier)


def _referenced_frame_of_reference(case: Case, image_class: str) -> Dataset:
    """ReferencedFrameOfReferenceSequence item: the frame, the study, every image slice."""
    ref_series = Dataset()
    ref_series.SeriesInstanceUID = case.series_instance_uid
    ref_series.ContourImageSequence = referenced_image_sequence(image_class,
                                                                case.image_instance_uids)
    ref_study = Dataset()
    ref_study.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"  # Detached Study Mgmt (retired)
    ref_study.ReferencedSOPInstanceUID = case.study_instance_uid
    ref_study.RTReferencedSeriesSequence = [ref_series]
    ref_for = Dataset()
    ref_for.FrameOfReferenceUID = case.frame_of_reference_uid
    ref_for.RTReferencedStudySequence = [ref_study]
    return ref_for


def _structure_contours(case: Case, structure: Structure, image_class: str) -> list[Dataset]:
    """CLOSED_PLANAR contour items of a structure's mask, slice by slice."""
    from models.patient.anatomy import mask_to_contours

    if structure.mask.shape != case.ct.shape:
        raise InputError(f"structure {structure.name!r} is not on the CT grid")
    contours: list[Dataset] = []
    for k, loops in sorted(mask_to_contours(structure.mask).items()):
        for loop in loops:
            ijk = np.column_stack([loop, np.full(len(loop), float(k))])
            lps = case.ct.voxel_to_patient(ijk)
            contours.append(_contour_item(lps, "CLOSED_PLANAR", image_class,
                                          case.image_instance_uids[k], len(contours) + 1))
    return contours


def _fiducial_contour(case: Case, point_lps: np.ndarray, image_class: str) -> Dataset:
    """POINT contour item of a fiducial, referencing its nearest slice."""
    point = np.asarray(point_lps, dtype=np.float64).reshape(1, 3)
    k = int(np.clip(np.rint(case.ct.patient_to_voxel(point)[0, 2]), 0, case.ct.shape[0] - 1))
    return _contour_item(point, "POINT", image_class, case.image_instance_uids[k], 1)


def _image_sop_class(case: Case) -> str:
    from models.dicom.common import CT_IMAGE_STORAGE, MR_IMAGE_STORAGE

    return MR_IMAGE_STORAGE if case.modality == "MR" else CT_IMAGE_STORAGE


def _contour_item(points_lps: np.ndarray, geometric_type: str, image_class: str,
                  image_uid: str, number: int) -> Dataset:
    item = Dataset()
    item.ContourImageSequence = referenced_image_sequence(image_class, [image_uid])
    item.ContourGeometricType = geometric_type
    item.NumberOfContourPoints = len(points_lps)
    item.ContourNumber = number
    set_ds_array(item, "ContourData", points_lps)  # micrometre precision
    return item


def _add_roi(roi_seq: list, contour_seq: list, obs_seq: list, number: int, name: str,
             color: tuple[int, int, int], roi_type: str, contours: list[Dataset],
             frame_uid: str) -> None:
    roi = Dataset()
    roi.ROINumber = number
    roi.ReferencedFrameOfReferenceUID = frame_uid
    roi.ROIName = name
    roi.ROIGenerationAlgorithm = "AUTOMATIC" if roi_type != "MARKER" else "MANUAL"
    roi_seq.append(roi)
    contour = Dataset()
    contour.ROIDisplayColor = [int(c) for c in color]
    contour.ReferencedROINumber = number
    if contours:
        contour.ContourSequence = contours
    contour_seq.append(contour)
    obs = Dataset()
    obs.ObservationNumber = number
    obs.ReferencedROINumber = number
    obs.RTROIInterpretedType = roi_type
    obs.ROIInterpreter = ""
    obs_seq.append(obs)


# ----------------------------------------------------------------------------- reading
@dataclass
class StructureSet:
    """What an RTSTRUCT holds, rasterised on an image grid.

    Attributes
    ----------
    structures : dict of str to Structure
        Closed-contour ROIs as masks on the reference grid.
    fiducials_lps : dict of str to numpy.ndarray
        POINT ROIs, name -> (3,) LPS mm (ROIs with several points: their mean).
    frame_of_reference_uid : str
        The frame of reference the contours are in.
    referenced_series_uid : str
        The image series the structure set says it belongs to ("" if not stated).
    label : str
        StructureSetLabel.
    warnings : list of str
        Skipped ROIs / contours and why.
    """

    structures: dict[str, Structure] = field(default_factory=dict)
    fiducials_lps: dict[str, np.ndarray] = field(default_factory=dict)
    frame_of_reference_uid: str = ""
    referenced_series_uid: str = ""
    label: str = ""
    warnings: list[str] = field(default_factory=list)


def contours_to_mask(polygons_ij: list[np.ndarray], shape_ji: tuple[int, int]) -> np.ndarray:
    """Rasterise closed polygons on one slice with the even-odd rule.

    Parameters
    ----------
    polygons_ij : list of numpy.ndarray
        Each (M, 2) continuous voxel indices (i = column, j = row), implicitly closed.
    shape_ji : tuple of int
        (rows, columns) of the slice.

    Returns
    -------
    numpy.ndarray
        Boolean (rows, columns): True where the voxel centre has an odd number of polygon
        edges to its left on its row (inside). Holes and disjoint islands need no
        orientation convention.
    """
    nj, ni = shape_ji
    toggles = np.zeros((nj, ni + 1), dtype=np.int32)
    for poly in polygons_ij:
        poly = np.asarray(poly, dtype=np.float64)
        if poly.shape[0] < 3:
            continue
        p, q = poly, np.roll(poly, -1, axis=0)
        lo, hi = np.minimum(p[:, 1], q[:, 1]), np.maximum(p[:, 1], q[:, 1])
        first = np.maximum(np.ceil(lo), 0).astype(np.int64)  # rows with lo <= j < hi
        last = np.minimum(np.ceil(hi) - 1, nj - 1).astype(np.int64)
        count = np.maximum(last - first + 1, 0)
        if not count.any():
            continue
        edge = np.repeat(np.arange(len(p)), count)
        rows = first[edge] + (np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count))
        pe, qe = p[edge], q[edge]
        x = pe[:, 0] + (rows - pe[:, 1]) * (qe[:, 0] - pe[:, 0]) / (qe[:, 1] - pe[:, 1])
        start = np.clip(np.floor(x).astype(np.int64) + 1, 0, ni)  # columns i > x toggle
        np.add.at(toggles, (rows, start), 1)
    return (np.cumsum(toggles[:, :ni], axis=1) % 2).astype(bool)


def _float_array(item: Dataset, keyword: str) -> np.ndarray:
    """A DS multi-value as float64 without building per-value Python objects when raw."""
    from pydicom.datadict import tag_for_keyword

    tag = tag_for_keyword(keyword)
    raw = item.get_item(tag)
    if raw is None:
        return np.zeros(0)
    value = raw.value
    if isinstance(value, bytes | bytearray):
        text = value.decode("ascii", errors="strict").strip(" \x00")
        return np.array(text.split("\\"), dtype=np.float64) if text else np.zeros(0)
    if isinstance(value, str):
        return np.array(value.split("\\"), dtype=np.float64) if value.strip() else np.zeros(0)
    return np.asarray(list(value) if not np.isscalar(value) else [value], dtype=np.float64)


def read_rtstruct(source: str | Path | Dataset, reference: Volume, *,
                  tolerance_slices: float = 0.1) -> StructureSet:
    """Read an RTSTRUCT and rasterise its ROIs on the grid of ``reference``.

    Parameters
    ----------
    source : str, Path or pydicom.Dataset
        The RTSTRUCT file or dataset.
    reference : Volume
        The image grid (usually the CT the structure set was drawn on).
    tolerance_slices : float
        How far (in slices) a contour's plane may lie from the nearest slice centre before a
        warning is logged; contours beyond half a slice outside the grid are skipped.

    Returns
    -------
    StructureSet

    Raises
    ------
    InputError
        Not an RTSTRUCT, or an attribute is malformed (message names the file and ROI).
    """
    name = str(source) if not isinstance(source, Dataset) else getattr(source, "filename",
                                                                        "RTSTRUCT") or "RTSTRUCT"
    ds = source if isinstance(source, Dataset) else read_dataset(source)
    try:
        with warnings.catch_warnings():  # malformed values are reported by our checks
            warnings.simplefilter("ignore")
            return _read_rtstruct(ds, reference, name, tolerance_slices)
    except InputError:
        raise
    except Exception as exc:  # malformed attributes surface as many exception types
        raise InputError(f"{name}: malformed RTSTRUCT ({type(exc).__name__}: {exc})") from exc


def check_structure_set_header(ds: Dataset, name: str) -> None:
    """Refuse a file that is not, or no longer, a usable RT Structure Set.

    Parameters
    ----------
    ds : pydicom.Dataset
        The file's dataset.
    name : str
        File name for the message.

    Raises
    ------
    InputError
        Modality (0008,0060) is not RTSTRUCT, SOP Class UID (0008,0016) is another class,
        or ROIContourSequence (3006,0039) is empty or missing.
    """
    modality = str(getattr(ds, "Modality", "") or "")
    sop_class = str(getattr(ds, "SOPClassUID", "") or "")
    if modality != "RTSTRUCT":
        raise InputError(f"{name}: not an RT Structure Set: Modality (0008,0060) is "
                         f"{modality!r}, expected 'RTSTRUCT'; re-export the structure set")
    if sop_class and sop_class != RT_STRUCTURE_SET_STORAGE:
        raise InputError(f"{name}: not an RT Structure Set: SOP Class UID (0008,0016) is "
                         f"{sop_class}, expected {RT_STRUCTURE_SET_STORAGE}")
    declared = len(getattr(ds, "StructureSetROISequence", None) or [])
    if not (getattr(ds, "ROIContourSequence", None) or []):
        raise InputError(f"{name}: ROIContourSequence (3006,0039) is empty or missing "
                         f"({declared} ROI(s) declared in StructureSetROISequence (3006,0020)):"
                         " the structure set is damaged or truncated; re-export it")


def _read_rtstruct(ds: Dataset, reference: Volume, name: str, tol: float) -> StructureSet:
    check_structure_set_header(ds, name)
    out = StructureSet(label=str(getattr(ds, "StructureSetLabel", "")))
    _read_references(ds, out)
    names = _roi_names(ds, out)
    types = {int(obs.ReferencedROINumber): str(getattr(obs, "RTROIInterpretedType", "") or "")
             for obs in getattr(ds, "RTROIObservationsSequence", [])}
    for roi_contour in getattr(ds, "ROIContourSequence", []):
        number = int(roi_contour.ReferencedROINumber)
        roi_name = names.get(number, f"ROI{number}")
        color = _roi_color(roi_contour)
        per_slice, points, skipped = _roi_contours(roi_contour, roi_name, reference, name, tol)
        if skipped:
            out.warnings.append(f"ROI {roi_name!r}: {skipped} contour(s) off the image grid or "
                                "not CLOSED_PLANAR were skipped")
        if per_slice:
            mask = np.zeros(reference.shape, dtype=bool)
            for k, polys in per_slice.items():
                mask[k] = contours_to_mask(polys, reference.shape[1:])
            if mask.any():
                out.structures[roi_name] = Structure(roi_name, mask, color,
                                                     types.get(number, "") or "ORGAN")
            else:
                out.warnings.append(f"ROI {roi_name!r}: its contours enclose no voxel centre "
                                    "of the image (drawn off the image?); left out")
        elif points:
            out.fiducials_lps[roi_name] = _single_point(points, roi_name, name)
        elif not skipped:
            out.warnings.append(f"ROI {roi_name!r} has no contours")
    for warning in out.warnings:
        log.warning("%s: %s", name, warning)
    return out


def _read_references(ds: Dataset, out: StructureSet) -> None:
    """Frame of reference and referenced image series (the last one stated)."""
    frames = getattr(ds, "ReferencedFrameOfReferenceSequence", [])
    if not frames:
        return
    out.frame_of_reference_uid = str(getattr(frames[0], "FrameOfReferenceUID", ""))
    for study in getattr(frames[0], "RTReferencedStudySequence", []):
        for series in getattr(study, "RTReferencedSeriesSequence", []):
            out.referenced_series_uid = str(getattr(series, "SeriesInstanceUID", ""))


def _roi_names(ds: Dataset, out: StructureSet) -> dict[int, str]:
    """ROI number -> name; a name used twice gets ``_<number>`` (with a warning)."""
    names: dict[int, str] = {}
    for roi in getattr(ds, "StructureSetROISequence", []):
        roi_name = str(getattr(roi, "ROIName", "") or f"ROI{roi.ROINumber}").strip()
        if roi_name in names.values():  # duplicate names exist in the wild: keep both
            out.warnings.append(f"ROI name {roi_name!r} used twice; the second is renamed "
                                f"{roi_name}_{roi.ROINumber}")
            roi_name = f"{roi_name}_{roi.ROINumber}"
        names[int(roi.ROINumber)] = roi_name
    return names


def _roi_color(roi_contour: Dataset) -> tuple[int, ...]:
    color = tuple(int(c) for c in getattr(roi_contour, "ROIDisplayColor", [255, 0, 0]))
    return color if len(color) == 3 else (255, 0, 0)


def _single_point(points: list[np.ndarray], roi_name: str, name: str) -> np.ndarray:
    """The one point of a marker ROI; several points are refused, never averaged."""
    stacked = np.concatenate(points)
    if len(stacked) != 1:
        raise InputError(f"{name}: ROI {roi_name!r}: POINT contour(s) in ContourSequence "
                         f"(3006,0040) hold {len(stacked)} points; a marker is one point: "
                         "fix the structure set")
    return stacked[0]


def _contour_points_lps(contour: Dataset, roi_name: str, name: str) -> np.ndarray:
    data = _float_array(contour, "ContourData")
    if data.size == 0 or data.size % 3:
        raise InputError(f"{name}: ROI {roi_name!r} has ContourData with {data.size} "
                         "values (not a multiple of 3)")
    if not np.all(np.isfinite(data)):
        raise InputError(f"{name}: ROI {roi_name!r} ContourData is not finite")
    return data.reshape(-1, 3)


def _roi_contours(roi_contour: Dataset, roi_name: str, reference: Volume, name: str,
                  tol: float) -> tuple[dict[int, list[np.ndarray]], list[np.ndarray], int]:
    """An ROI's closed contours per slice (voxel i, j), its points (LPS) and skipped count."""
    voxel_from_patient = reference.voxel_from_patient
    nk = reference.shape[0]
    per_slice: dict[int, list[np.ndarray]] = {}
    points: list[np.ndarray] = []
    skipped = 0
    seen: set[bytes] = set()
    repeated = 0
    for contour in getattr(roi_contour, "ContourSequence", []):
        lps = _contour_points_lps(contour, roi_name, name)
        kind = str(getattr(contour, "ContourGeometricType", "CLOSED_PLANAR")).strip()
        if kind == "POINT":
            points.append(lps)
            continue
        if kind != "CLOSED_PLANAR":
            skipped += 1
            continue
        ijk = lps @ voxel_from_patient[:3, :3].T + voxel_from_patient[:3, 3]
        k_float = float(np.mean(ijk[:, 2]))
        k = int(np.rint(k_float))
        if k < 0 or k >= nk or np.ptp(ijk[:, 2]) > 0.5:
            skipped += 1
            continue
        key = np.round(lps, 3).tobytes()  # the micrometre precision of the file
        if key in seen:  # a repeat would cancel its twin under the even-odd rule
            repeated += 1
            continue
        seen.add(key)
        if abs(k_float - k) > tol:
            log.warning("%s: ROI %s contour lies %.2f slices off slice %d", name, roi_name,
                        k_float - k, k)
        per_slice.setdefault(k, []).append(ijk[:, :2])
    if repeated:
        log.warning("%s: ROI %s: %d contour(s) repeated on the same slice were read once",
                    name, roi_name, repeated)
    return per_slice, points, skipped
