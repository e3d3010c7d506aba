"""The intraoperative anatomy: the preoperative case plus what the surgeon changed.

During IORT the bowel and stomach are retracted, the tumour is gone and the bed may be
packed. An :class:`EditList` is an ordered, undoable list of such changes, each with who
made it, when and how it was measured; :meth:`EditList.apply` derives the edited case (CT,
labelmaps) from the original and the edits. The original is never modified, so any edit
can be undone and the preoperative position shown beside the current one.

Edits
-----
* :class:`Retraction` — a structure moved rigidly (or affinely):
  ``patient_from_retracted`` maps a point of the organ where the CT saw it to where it is
  now. The moved tissue carries its HU; the space it vacated is filled with ``fill``
  (``"air"`` for an open abdomen, ``"saline"`` / ``"soft_tissue"`` for packing).
* :class:`Resection` — a structure (GTV, cavity) emptied and filled with ``fill``.

Overlaps (applied in list order, each edit on the result of the previous ones):

1. a moved organ takes the voxels where it now lies: its HU and its label win there, and
   the other structures lose those voxels — except the *external* contour (ROI type
   ``EXTERNAL``), which keeps everything inside the body;
2. the vacated voxels (the organ before minus after) get the fill HU and leave the moved
   structure's mask;
3. a resection sets the fill HU inside the structure and keeps its mask (the region stays
   visible as the cavity it is now).

Examples
--------
>>> from models.patient.volume import Volume
>>> from models.patient.case import Case, Structure
>>> ct = Volume.from_grid(np.zeros((4, 4, 8), np.float32), spacing_mm=(1.0, 1.0, 1.0))
>>> bowel = np.zeros((4, 4, 8), bool); bowel[1:3, 1:3, 1:3] = True
>>> case = Case(ct.with_array(np.where(bowel, 40.0, 0.0).astype(np.float32)),
...             {"BOWEL": Structure("BOWEL", bowel)})
>>> moved = np.eye(4); moved[0, 3] = 4.0          # 4 mm along +x (i)
>>> edits = EditList([Retraction("BOWEL", moved, fill="air")])
>>> edited = edits.apply(case)
>>> int(np.argwhere(edited.structures["BOWEL"].mask)[:, 2].min())   # i now starts at 5
5
>>> float(edited.ct.array[1, 1, 1]), float(edited.ct.array[1, 1, 5])   # vacated air, moved HU
(-1000.0, 40.0)
>>> bool(case.structures["BOWEL"].mask[1, 1, 1])                # the original is kept
True
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy import ndimage

from models.base.errors import InputError
from models.base.validation import as_transform
from models.patient.case import Case, Structure

#: HU of the materials a vacated or resected region can be filled with.
FILL_HU: dict[str, float] = {"air": -1000.0, "saline": 0.0, "soft_tissue": 40.0,
                             "fat": -100.0}
#: Structures whose mask never loses voxels to a moved organ.
KEEPS_ITS_VOXELS = ("EXTERNAL",)


@dataclass(frozen=True)
class Provenance:
    """Who made an edit, when (Unix s) and how it was measured."""

    who: str = ""
    when_unix_s: float = field(default_factory=time.time)
    how: str = "manual"


def _check_fill(fill: str) -> None:
    if fill not in FILL_HU:
        raise InputError(f"fill {fill!r} is not a material; choose one of: "
                         f"{', '.join(FILL_HU)}")


@dataclass(frozen=True)
class Retraction:
    """A structure moved: ``patient_from_retracted`` maps its preoperative points to now.

    ``affine`` allows a non-rigid (affine) ``patient_from_retracted``; default rigid.
    """

    structure: str
    patient_from_retracted: np.ndarray
    fill: str = "air"
    affine: bool = False
    provenance: Provenance = field(default_factory=Provenance)

    def __post_init__(self) -> None:
        _check_fill(self.fill)
        object.__setattr__(self, "patient_from_retracted", as_transform(
            self.patient_from_retracted, name="patient_from_retracted",
            rigid=not self.affine, atol=1e-5))

    @property
    def moved_mm(self) -> float:
        """How far the structure's frame origin moved (mm) — see :meth:`describe`."""
        return float(np.linalg.norm(self.patient_from_retracted[:3, 3]))

    def describe(self, centroid_lps: np.ndarray | None = None) -> str:
        """"BOWEL moved 32 mm, 12 deg" (the distance of ``centroid_lps`` if given)."""
        m = self.patient_from_retracted
        angle = float(np.degrees(np.arccos(np.clip((np.trace(m[:3, :3]) - 1) / 2, -1, 1))))
        if centroid_lps is not None:
            c = np.asarray(centroid_lps, float)
            dist = float(np.linalg.norm(m[:3, :3] @ c + m[:3, 3] - c))
        else:
            dist = self.moved_mm
        return f"{self.structure} moved {dist:.0f} mm, {angle:.0f} deg"


@dataclass(frozen=True)
class Resection:
    """A structure emptied (tumour removed) and filled with ``fill``."""

    structure: str
    fill: str = "air"
    provenance: Provenance = field(default_factory=Provenance)

    def __post_init__(self) -> None:
        _check_fill(self.fill)

    def describe(self, centroid_lps: np.ndarray | None = None) -> str:
        return f"{self.structure} resected, filled with {self.fill}"


Edit = Retraction | Resection


def _moved_mask_and_hu(case: Case, ct: np.ndarray, mask: np.ndarray, edit: Retraction
                       ) -> tuple[np.ndarray, np.ndarray]:
    """The structure's mask where it is now and the HU it carries there (CT grid)."""
    voxel_from_patient = case.ct.voxel_from_patient
    # voxel now -> patient now -> patient before -> voxel before
    before_from_now = (voxel_from_patient @ np.linalg.inv(edit.patient_from_retracted)
                       @ case.ct.patient_from_voxel)
    # ndimage works in (k, j, i) order: reorder the (i, j, k) affine
    perm = np.array([[0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1.0]])
    kji = perm @ before_from_now @ perm
    moved = ndimage.affine_transform(mask.astype(np.float32), kji[:3, :3], kji[:3, 3],
                                     order=0, mode="constant", cval=0.0) > 0.5
    hu = ndimage.affine_transform(ct, kji[:3, :3], kji[:3, 3], order=1, mode="nearest")
    return moved, hu.astype(np.float32)


def _apply_retraction(case: Case, ct: np.ndarray, masks: dict[str, np.ndarray],
                      edit: Retraction) -> None:
    if edit.structure not in masks:
        raise InputError(f"retraction of {edit.structure!r}: no such structure; have: "
                         f"{', '.join(masks) or 'none'}")
    before = masks[edit.structure]
    moved, hu = _moved_mask_and_hu(case, ct, before, edit)
    vacated = before & ~moved
    ct[vacated] = FILL_HU[edit.fill]
    ct[moved] = hu[moved]
    for name, mask in masks.items():
        if name != edit.structure and case.structures[name].roi_type not in KEEPS_ITS_VOXELS:
            mask &= ~moved
    masks[edit.structure] = moved


def _apply_resection(ct: np.ndarray, masks: Mapping[str, np.ndarray],
                     edit: Resection) -> None:
    if edit.structure not in masks:
        raise InputError(f"resection of {edit.structure!r}: no such structure; have: "
                         f"{', '.join(masks) or 'none'}")
    ct[masks[edit.structure]] = FILL_HU[edit.fill]


class EditList:
    """Ordered, undoable intraoperative edits of one case.

    Parameters
    ----------
    edits : iterable of Retraction or Resection, optional
    """

    def __init__(self, edits: Iterable[Edit] = ()) -> None:
        self._edits: list[Edit] = list(edits)
        self._undone: list[Edit] = []

    def __len__(self) -> int:
        return len(self._edits)

    def __iter__(self):
        return iter(self._edits)

    def add(self, edit: Edit) -> None:
        """Append an edit (clears the redo stack)."""
        if not isinstance(edit, Retraction | Resection):
            raise InputError(f"not an anatomy edit: {type(edit).__name__}")
        self._edits.append(edit)
        self._undone.clear()

    def undo(self) -> Edit | None:
        """Take back the last edit; returns it (None when there is none)."""
        if not self._edits:
            return None
        edit = self._edits.pop()
        self._undone.append(edit)
        return edit

    def redo(self) -> Edit | None:
        """Re-apply the last undone edit."""
        if not self._undone:
            return None
        edit = self._undone.pop()
        self._edits.append(edit)
        return edit

    def apply(self, case: Case) -> Case:
        """The edited case: CT and labelmaps derived from ``case`` and the edits in order
        (``case`` itself is not modified)."""
        ct = np.array(case.ct.array, dtype=np.float32, copy=True)
        masks = {n: s.mask.copy() for n, s in case.structures.items()}
        for edit in self._edits:
            if isinstance(edit, Retraction):
                _apply_retraction(case, ct, masks, edit)
            else:
                _apply_resection(ct, masks, edit)
        structures = {n: Structure(n, masks[n], s.color_rgb, s.roi_type)
                      for n, s in case.structures.items()}
        return replace(case, ct=case.ct.with_array(ct), structures=structures,
                       image_instance_uids=list(case.image_instance_uids))

    # ------------------------------------------------------------ persistence
    def to_json(self) -> list[dict[str, Any]]:
        """The edits as JSON-able dicts (for the case folder and the session log)."""
        out = []
        for e in self._edits:
            item: dict[str, Any] = {"kind": type(e).__name__.lower(), "structure": e.structure,
                                    "fill": e.fill, "who": e.provenance.who,
                                    "when_unix_s": e.provenance.when_unix_s,
                                    "how": e.provenance.how}
            if isinstance(e, Retraction):
                item["patient_from_retracted"] = e.patient_from_retracted.tolist()
                item["affine"] = e.affine
            out.append(item)
        return out

    @classmethod
    def from_json(cls, data: Any, *, source: str = "edits") -> EditList:
        """Read :meth:`to_json` output; :class:`InputError` naming the entry otherwise."""
        if not isinstance(data, list):
            raise InputError(f"{source}: expected a list of edits")
        edits: list[Edit] = []
        for n, item in enumerate(data):
            try:
                prov = Provenance(str(item.get("who", "")), float(item["when_unix_s"]),
                                  str(item.get("how", "manual")))
                if item["kind"] == "retraction":
                    edits.append(Retraction(str(item["structure"]),
                                            np.asarray(item["patient_from_retracted"], float),
                                            str(item.get("fill", "air")),
                                            bool(item.get("affine", False)), prov))
                elif item["kind"] == "resection":
                    edits.append(Resection(str(item["structure"]),
                                           str(item.get("fill", "air")), prov))
                else:
                    raise InputError(f"kind {item['kind']!r} is not retraction or resection")
            except (KeyError, TypeError, ValueError, AttributeError, InputError) as exc:
                raise InputError(f"{source}: entry {n} is not a valid edit ({exc})") from exc
        return cls(edits)
