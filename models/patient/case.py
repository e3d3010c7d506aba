"""Case: the images, structures and fiducials of one patient, on one CT grid.

A :class:`Case` is what the rest of the program works on, whether it came from the
built-in phantom (:func:`models.patient.phantom.make_phantom`), from a clinic's DICOM folder
(:func:`models.dicom.read_case`) or from a case folder (:mod:`models.patient.case_store`).

Conventions
-----------
* ``ct`` is a :class:`models.patient.volume.Volume` of float32 HU (or MR intensity) whose
  ``patient_from_voxel`` maps ``(i, j, k, 1)`` to patient LPS mm.
* Every :class:`Structure` mask is a boolean array with exactly ``ct.shape``.
* Fiducials are POINT ROIs in patient LPS mm.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import ndimage

from models.base.errors import InputError
from models.patient.volume import Volume

if TYPE_CHECKING:  # pragma: no cover
    import pyvista

#: RTROIInterpretedType values the program understands (DICOM PS3.3 C.8.8.8.1).
ROI_TYPES: tuple[str, ...] = (
    "EXTERNAL", "PTV", "CTV", "GTV", "TREATED_VOLUME", "IRRAD_VOLUME", "BOLUS", "AVOIDANCE",
    "ORGAN", "MARKER", "REGISTRATION", "ISOCENTER", "CONTRAST_AGENT", "CAVITY",
    "BRACHY_CHANNEL", "BRACHY_ACCESSORY", "BRACHY_SRC_APP", "BRACHY_CHNL_SHLD", "SUPPORT",
    "FIXATION", "DOSE_REGION", "CONTROL", "DOSE_MEASUREMENT", "",
)


@dataclass(eq=False)
class Structure:
    """One region of interest as a labelmap on the CT grid.

    Parameters
    ----------
    name : str
        DICOM ROIName, e.g. ``"CTV"``.
    mask : numpy.ndarray
        Boolean array, shape ``(nk, nj, ni)`` == ``case.ct.shape``.
    color_rgb : tuple of int
        Display colour (ROIDisplayColor), each 0..255.
    roi_type : str
        RTROIInterpretedType: ``EXTERNAL``, ``CTV``, ``ORGAN``, ``AVOIDANCE``, ``CAVITY``, ...
    """

    name: str
    mask: np.ndarray
    color_rgb: tuple[int, int, int] = (255, 0, 0)
    roi_type: str = "ORGAN"

    def __post_init__(self) -> None:
        self.mask = np.asarray(self.mask, dtype=bool)
        if self.mask.ndim != 3:
            raise InputError(f"Structure {self.name!r}: mask must be 3-D, got {self.mask.shape}")
        rgb = tuple(int(c) for c in self.color_rgb)
        if len(rgb) != 3 or any(c < 0 or c > 255 for c in rgb):
            raise InputError(f"Structure {self.name!r}: color_rgb must be 3 ints 0..255, "
                             f"got {self.color_rgb!r}")
        self.color_rgb = rgb  # type: ignore[assignment]

    @property
    def voxel_count(self) -> int:
        """Number of voxels inside the structure."""
        return int(np.count_nonzero(self.mask))


@dataclass(eq=False)
class Case:
    """One patient: CT (or MR) volume, structures on its grid, fiducials, DICOM identity.

    Parameters
    ----------
    ct : Volume
        float32 HU (CT) or intensity (MR); ``patient_from_voxel`` to patient LPS mm.
    structures : dict of str to Structure
        By ROIName; every mask has ``ct.shape``.
    fiducials_lps : dict of str to numpy.ndarray
        POINT ROIs, name -> (3,) patient LPS mm.
    patient_id, patient_name : str
        DICOM PatientID / PatientName.
    study_instance_uid, series_instance_uid, frame_of_reference_uid : str
        UIDs of the image series; structure sets and RT objects written for this case
        reference them. Empty strings mean "not yet assigned" (the DICOM writers create them).
    modality : str
        ``"CT"`` or ``"MR"``.
    image_instance_uids : list of str
        SOPInstanceUID of each image slice, in ``k`` order (empty until written/imported);
        RT objects reference slices through them.
    dicom_attributes : dict of str to str
        Further identity read from / written to DICOM, keys among
        ``patient_birth_date, patient_sex, study_id, study_date, study_time,
        accession_number, referring_physician_name, study_description``
        (see :class:`models.dicom.common.Identity`).
    dose : Volume or None
        A dose grid in Gy belonging to the case (its own grid), if any.
    plan : dict or None
        JSON-serialisable plan description owned by the planning code, if any.
    disc : models.patient.edits.DiscPlacement or None
        A shielding disc placed in the patient (set on an edited case by
        :meth:`models.patient.edits.EditList.apply`; the dose engine takes it from here).
    """

    ct: Volume
    structures: dict[str, Structure] = field(default_factory=dict)
    fiducials_lps: dict[str, np.ndarray] = field(default_factory=dict)
    patient_id: str = ""
    patient_name: str = ""
    study_instance_uid: str = ""
    series_instance_uid: str = ""
    frame_of_reference_uid: str = ""
    modality: str = "CT"
    image_instance_uids: list[str] = field(default_factory=list)
    dicom_attributes: dict[str, str] = field(default_factory=dict)
    dose: Volume | None = None
    plan: dict[str, Any] | None = None
    disc: Any = None
    _mesh_cache: dict[tuple[str, int | None], Any] = field(default_factory=dict, repr=False,
                                                           init=False)

    def __post_init__(self) -> None:
        for name, structure in self.structures.items():
            if structure.mask.shape != self.ct.shape:
                raise InputError(f"structure {name!r} mask shape {structure.mask.shape} "
                                 f"differs from CT grid {self.ct.shape}")
        if self.image_instance_uids and len(self.image_instance_uids) != self.ct.shape[0]:
            raise InputError(f"{len(self.image_instance_uids)} image_instance_uids for "
                             f"{self.ct.shape[0]} slices")
        self.fiducials_lps = {name: np.asarray(p, dtype=np.float64).reshape(3)
                              for name, p in self.fiducials_lps.items()}

    def structure(self, name: str) -> Structure:
        """The structure called ``name``; :class:`InputError` naming the choices if absent."""
        try:
            return self.structures[name]
        except KeyError:
            listed = ", ".join(self.structures) or "none"
            raise InputError(f"case has no structure {name!r}; available: {listed}") from None

    def add_structure(self, structure: Structure) -> None:
        """Add or replace a structure (e.g. a retracted organ); drops its cached meshes."""
        if structure.mask.shape != self.ct.shape:
            raise InputError(f"structure {structure.name!r} mask shape {structure.mask.shape} "
                             f"differs from CT grid {self.ct.shape}")
        self.structures[structure.name] = structure
        for key in [k for k in self._mesh_cache if k[0] == structure.name]:
            del self._mesh_cache[key]

    def mesh(self, name: str, *, max_triangles: int | None = None) -> pyvista.PolyData:
        """Surface mesh of a structure in patient LPS mm (cached).

        Parameters
        ----------
        name : str
            Structure name.
        max_triangles : int or None
            Triangle budget for live rendering (quadric decimation); ``None`` keeps the
            full-resolution smoothed surface (for reports).

        Returns
        -------
        pyvista.PolyData
            Closed triangle surface with point normals, points in LPS mm. The mesh is
            shared through the cache: copy it before modifying it.
        """
        from models.patient.anatomy import mask_to_mesh

        key = (name, None if max_triangles is None else int(max_triangles))
        if key not in self._mesh_cache:
            if max_triangles is None:
                self._mesh_cache[key] = mask_to_mesh(self.structure(name).mask,
                                                     self.ct.patient_from_voxel)
            else:
                from models.patient.anatomy import decimate_mesh

                full = self.mesh(name)
                self._mesh_cache[key] = decimate_mesh(full, int(max_triangles))
        return self._mesh_cache[key]

    def centroid_lps(self, name: str) -> np.ndarray:
        """Centre of mass of a structure's voxels (or a fiducial's position), (3,) LPS mm."""
        if name in self.fiducials_lps and name not in self.structures:
            return self.fiducials_lps[name].copy()
        mask = self.structure(name).mask
        if not mask.any():
            raise InputError(f"structure {name!r} is empty: it has no centroid")
        kji = np.asarray(ndimage.center_of_mass(mask), dtype=np.float64)
        return self.ct.voxel_to_patient(kji[::-1])[0]

    def volume_cc(self, name: str) -> float:
        """Volume of a structure in cm^3 (voxel count x voxel volume)."""
        return self.structure(name).voxel_count * self.ct.voxel_volume_mm3 / 1000.0
