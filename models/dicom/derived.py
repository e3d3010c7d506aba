"""The intraoperative anatomy as DICOM: the edited CT as a derived series, with RT on it.

:func:`export_edited_case` writes, for a case and its anatomy edits
(:class:`models.patient.edits.EditList`):

* the **edited CT** as a new series of the same study and Frame of Reference (the edits
  move tissue inside the patient; the coordinates are the original CT's): a new
  SeriesInstanceUID and SOP instances, ImageType ``DERIVED\\SECONDARY\\AXIAL``, a
  DerivationDescription listing the edits ("BOWEL moved 35 mm, 4 deg, by tracked
  retractor"), the ReferencedSeriesSequence naming the original series and its slices
  (Common Instance Reference module) and, per slice, the SourceImageSequence naming the
  original slice it was derived from;
* an **RTSTRUCT** of the structures where they are now (the edited labelmaps), referencing
  the derived series slice by slice;
* the **RTPLAN** and the **RTDOSE** computed on the edited CT (with a placed shielding disc,
  when the edits hold one), referencing that structure set.

``with_ct`` writes the original series too (its own UIDs), so the folder is a complete
package: the original, what it became, and the dose on it. The original case is never
changed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

from pydicom.dataset import Dataset

from models.base.errors import InputError
from models.dicom.common import CT_IMAGE_STORAGE, ensure_uids, identity_of, new_uid
from models.dicom.deidentify import Deidentifier
from models.dicom.image_writer import write_image_series
from models.dicom.rt_export import PlanSpec, check_mu_usable, write_plan_and_dose
from models.dicom.rtstruct import write_rtstruct
from models.dicom.writer import dicom_output
from models.patient.case import Case
from models.patient.edits import EditList

log = logging.getLogger(__name__)

#: PurposeOfReferenceCodeSequence of each slice's source (DCM, CID 7202).
SOURCE_PURPOSE = ("121322", "DCM", "Source image for image processing operation")
#: SeriesDescription of the derived series.
DERIVED_DESCRIPTION = "IORT CT, intraoperative anatomy (derived)"
#: Longest DerivationDescription (ST: 1024 characters).
_ST_MAX = 1024


@dataclass(frozen=True)
class DerivedExport:
    """What :func:`export_edited_case` wrote.

    Attributes
    ----------
    out_dir : Path
    derived_series_uid : str
        SeriesInstanceUID of the edited CT.
    derived_files : int
        Slices of the edited CT written.
    original_files : int
        Slices of the original CT written (``with_ct``; 0 otherwise).
    rtstruct, rtplan, rtdose : Path
    mu, dose_max_gy : float
    derivation : str
        The DerivationDescription written.
    """

    out_dir: Path
    derived_series_uid: str
    derived_files: int
    original_files: int
    rtstruct: Path
    rtplan: Path
    rtdose: Path
    mu: float
    dose_max_gy: float
    derivation: str


def derivation_text(case: Case, edits: EditList) -> str:
    """The DerivationDescription: each edit with how it was measured, in order."""
    lines = [f"{text}, by {edit.provenance.how}"
             for text, edit in zip(edits.descriptions(case), edits, strict=True)]
    text = "Preoperative CT edited for the intraoperative anatomy: " + "; ".join(lines)
    return text if len(text) <= _ST_MAX else text[:_ST_MAX - 3] + "..."


def _reference(uid: str) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = CT_IMAGE_STORAGE
    item.ReferencedSOPInstanceUID = uid
    return item


def _derivation(case: Case, derivation: str):
    """``add_attributes`` of the derived slices: the derivation, the original series and
    each slice's source image (PS3.3 C.7.6.1.1.4)."""
    sources = list(case.image_instance_uids)
    ref_series = Dataset()
    ref_series.SeriesInstanceUID = case.series_instance_uid
    ref_series.ReferencedInstanceSequence = [_reference(uid) for uid in sources]

    def derive(ds: Dataset, k: int) -> None:
        ds.DerivationDescription = derivation
        ds.ReferencedSeriesSequence = [ref_series]
        src = _reference(sources[k])
        purpose = Dataset()
        purpose.CodeValue, purpose.CodingSchemeDesignator, purpose.CodeMeaning = \
            SOURCE_PURPOSE
        src.PurposeOfReferenceCodeSequence = [purpose]
        ds.SourceImageSequence = [src]
    return derive


def _edited_dose(case: Case, edits: EditList, spec: PlanSpec, *, grid_mm: float,
                 with_ct: bool, accept_estimated_mu: bool):
    """Check the export can be made and compute the plan's dose on the edited anatomy
    (before anything is written): ``(edited case, DoseResult)``."""
    from models.dose.disc import disc_in_beam
    from models.dose.electron import compute_electron_dose

    if not len(edits):
        raise InputError("the case has no anatomy edits: export it as it is (without "
                         "--edited), or edit it first")
    if case.modality != "CT":
        raise InputError(f"the case's images are {case.modality}, not CT: an edited CT and "
                         "its electron dose need CT numbers")
    edited = edits.apply(case)
    disc = None if edited.disc is None else disc_in_beam(edited.disc,
                                                         spec.patient_from_applicator)
    result = compute_electron_dose(edited.ct, spec.patient_from_applicator, spec.beam,
                                   prescription_gy=spec.prescription_gy, grid_mm=grid_mm,
                                   isodose_percent=spec.isodose_percent, disc=disc)
    check_mu_usable(result, accept_estimated_mu=accept_estimated_mu)
    if not with_ct and len(case.image_instance_uids) != case.ct.shape[0]:
        raise InputError("the case has no CT slice UIDs for the derived series to reference "
                         "(it was not imported from DICOM); pass --with-ct to write the "
                         "original CT series as well")
    return edited, result


def export_edited_case(case: Case, edits: EditList, spec: PlanSpec, out_dir: str | Path, *,
                       deidentifier: Deidentifier | None = None, with_ct: bool = False,
                       force: bool = False,
                       accept_estimated_mu: bool = False, grid_mm: float = 2.0
                       ) -> DerivedExport:
    """Write the edited CT as a derived series, the RTSTRUCT on it and the plan's dose.

    Parameters
    ----------
    case : Case
        The preoperative case (not modified; a CT case).
    edits : EditList
        Its anatomy edits (at least one).
    spec : PlanSpec
        Beam, prescription and applicator pose (:func:`models.dicom.rt_export.resolve_plan`).
    out_dir : str or Path
        Output folder (empty unless ``force``).
    deidentifier : models.dicom.deidentify.Deidentifier, optional
        De-identify everything written (PS3.15 Basic Profile; UIDs replaced consistently,
        so the derived series still references the original one).
    with_ct : bool
        Also write the original CT series (its own UIDs).
    force : bool
        Allow a non-empty output folder.
    accept_estimated_mu : bool
        Write MU that rest on an estimated output factor.
    grid_mm : float
        Dose grid spacing (mm), also the RT Dose spacing.

    Raises
    ------
    InputError
        No edits, an MR case, an edit the case refuses, estimated MU not accepted; nothing
        is written then.
    """
    edited, result = _edited_dose(case, edits, spec, grid_mm=grid_mm, with_ct=with_ct,
                                  accept_estimated_mu=accept_estimated_mu)
    out = Path(out_dir)
    ensure_uids(case)
    identity = identity_of(case)
    original_files = 0
    derivation = derivation_text(case, edits)
    derived_uid = new_uid("derived", case.series_instance_uid, derivation)
    with dicom_output(out, force=force) as staging:
        if with_ct:
            case.image_instance_uids = write_image_series(
                case.ct, staging, identity, series_instance_uid=case.series_instance_uid,
                modality="CT", instance_uids=case.image_instance_uids or None,
                series_description="IORT planning CT", file_prefix="CT",
                deidentifier=deidentifier)
            original_files = len(case.image_instance_uids)
        derive = _derivation(case, derivation)
        derived_uids = write_image_series(
            edited.ct, staging, identity, series_instance_uid=derived_uid, modality="CT",
            series_number=5, series_description=DERIVED_DESCRIPTION, file_prefix="CT_EDITED",
            add_attributes=derive, deidentifier=deidentifier)
        on_derived = replace(edited, series_instance_uid=derived_uid,
                             image_instance_uids=derived_uids)
        struct_uid = new_uid()
        write_rtstruct(on_derived, staging / "RS_EDITED.dcm", label="IORT EDITED",
                       sop_instance_uid=struct_uid, series_number=6,
                       deidentifier=deidentifier)
        files = write_plan_and_dose(staging, spec, result.mu, result.dose, edited.ct, identity,
                                    spacing_mm=result.grid_mm, rtplan_name="RP_EDITED.dcm",
                                    rtdose_name="RD_EDITED.dcm", structure_set_uid=struct_uid,
                                    plan_series_number=7, dose_series_number=8,
                                    mu_estimated=result.mu_estimated,
                                    dose_to=result.dose_to, deidentifier=deidentifier)
    rtstruct = out / "RS_EDITED.dcm"
    log.info("exported the edited anatomy to %s (%d edits)", out, len(edits))
    return DerivedExport(out_dir=out, derived_series_uid=derived_uid,
                         derived_files=len(derived_uids), original_files=original_files,
                         rtstruct=rtstruct, rtplan=out / files.rtplan.name,
                         rtdose=out / files.rtdose.name,
                         mu=float(result.mu), dose_max_gy=float(files.dose.array.max()),
                         derivation=derivation)
