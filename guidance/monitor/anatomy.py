"""Intraoperative anatomy in the OR: the edit list the team works with, without Qt.

:class:`AnatomyEditor` holds the preoperative case and its
:class:`~models.patient.edits.EditList`, and does what every edit needs, in one place:

1. check it against the case (:meth:`EditList.add` with the case: refused edits raise
   :class:`~models.base.errors.InputError` and change nothing);
2. derive the edited case (CT, labelmaps, disc) from the original;
3. record it in the session log (``anatomy_edit`` with the edit's JSON, ``anatomy_undo`` /
   ``anatomy_redo``) and, when a case folder is given, save the list there (sealed);
4. hand the edited case to the dose service, which recomputes the dose for the last
   applicator pose at once and reports the organ doses where they are now and where the
   CT saw them (``DoseUpdate.metrics_preoperative``).

The views read :meth:`AnatomyEditor.outlines` (which structures moved: the preoperative
outline drawn dashed, the current one solid) and :meth:`AnatomyEditor.descriptions` (the
edit list: "BOWEL moved 35 mm, 4 deg").

A retraction in progress (an organ following the tracked retractor, or dragged in the 3D
view) is a *preview*: :meth:`AnatomyEditor.preview` shows it and recomputes the dose, but
logs nothing; :meth:`AnatomyEditor.commit_preview` turns it into an edit. Quick corrections
from the mouse are :func:`drag_retraction` (translate in the view plane) and
:func:`rotate_retraction` (turn about the view direction through the organ's centre).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from guidance.record.session_log import SessionLog
from guidance.registration.retraction import RetractionFit, RetractorCoupling
from guidance.treatment.dose_service import DoseService
from models.base.errors import InputError
from models.base.transforms import invert_rigid, transform_difference, transform_from_rotvec
from models.base.validation import as_transform
from models.patient.case import Case
from models.patient.edits import (
    REGION_NAME,
    DiscPlacement,
    Edit,
    EditList,
    Provenance,
    Resection,
    ResectionRegion,
    Retraction,
    edit_to_json,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OrganOutline:
    """A structure the edits changed: draw ``before`` dashed and ``now`` solid.

    Attributes
    ----------
    structure : str
    patient_from_retracted : (4, 4) array
        Where the preoperative organ went (the product of its retractions, in order).
    description : str
        "BOWEL moved 35 mm, 4 deg" for the organ's whole move.
    """

    structure: str
    patient_from_retracted: np.ndarray
    description: str


class AnatomyEditor:
    """The case's anatomy edits with their derived case, log, case folder and dose.

    Parameters
    ----------
    case : Case
        The preoperative case (never modified).
    edits : EditList, optional
        Edits already made (e.g. :func:`models.patient.case_store.load_edits`).
    session_log : SessionLog, optional
        Where each edit, undo and redo is recorded.
    dose_service : DoseService, optional
        Told the edited case after every change (``set_case``).
    case_dir : str or Path, optional
        A case folder the list is saved into after every change
        (:func:`models.patient.case_store.save_edits`).
    who : str
        Default author of the edits made here.
    """

    def __init__(self, case: Case, *, edits: EditList | None = None,
                 session_log: SessionLog | None = None,
                 dose_service: DoseService | None = None,
                 case_dir: str | Path | None = None, who: str = "") -> None:
        self.original = case
        self.edits = EditList() if edits is None else edits
        self.session_log = session_log
        self.dose_service = dose_service
        self.case_dir = None if case_dir is None else Path(case_dir)
        self.who = who
        self._edited = self.edits.apply(case)
        self._preview: Retraction | None = None
        #: Called after every change (no arguments), e.g. the window redraws.
        self.listeners: list[Callable[[], None]] = []

    # ---------------------------------------------------------------- queries
    @property
    def case(self) -> Case:
        """The anatomy now: the edited case (with a preview on top, while there is one)."""
        return self._edited

    @property
    def previewing(self) -> bool:
        return self._preview is not None

    @property
    def preview_structure(self) -> str | None:
        """The organ being moved in a preview (None without one)."""
        return None if self._preview is None else self._preview.structure

    def descriptions(self) -> list[str]:
        """The edit list, in order ("BOWEL moved 35 mm, 4 deg")."""
        return self.edits.descriptions(self.original)

    def retraction_of(self, structure: str) -> np.ndarray:
        """``patient_from_retracted`` of the organ now (identity when it has not moved)."""
        total = np.eye(4)
        edits = [*self.edits, *([self._preview] if self._preview is not None else [])]
        for edit in edits:
            if isinstance(edit, Retraction) and edit.structure == structure:
                total = edit.patient_from_retracted @ total
        return total

    def outlines(self) -> list[OrganOutline]:
        """Every structure moved by the edits (or the preview), with its whole move."""
        names = []
        edits = [*self.edits, *([self._preview] if self._preview is not None else [])]
        for edit in edits:
            if isinstance(edit, Retraction) and edit.structure not in names:
                names.append(edit.structure)
        out = []
        for name in names:
            total = self.retraction_of(name)
            centroid = (self.original.centroid_lps(name)
                        if self.original.structures[name].mask.any() else None)
            out.append(OrganOutline(name, total, Retraction(name, total, affine=True)
                                    .describe(centroid)))
        return out

    # ---------------------------------------------------------------- changes
    def add(self, edit: Edit) -> Case:
        """Check, apply, log and save an edit; returns the edited case.

        Raises
        ------
        InputError
            The case refuses the edit (nothing changes, nothing is logged).
        """
        edited = EditList([*self.edits, edit]).apply(self.original)   # the check, once
        self.edits.add(edit)
        self._preview = None
        self._changed(edited)
        if self.session_log is not None:
            self.session_log.log_anatomy_edit(edit_to_json(edit),
                                              description=self.descriptions()[-1],
                                              n_edits=len(self.edits))
        return self._edited

    def retract(self, structure: str, patient_from_retracted: np.ndarray, *,
                fill: str = "air", how: str = "manual", who: str | None = None) -> Case:
        """Add a :class:`Retraction` made here (provenance: ``who``, now, ``how``)."""
        return self.add(Retraction(structure, patient_from_retracted, fill=fill,
                                   provenance=Provenance(who=self.who if who is None else who,
                                                         how=how)))

    def resect(self, structure: str, *, fill: str = "air", how: str = "manual",
               who: str | None = None) -> Case:
        """Add a :class:`Resection` of a structure of the case (GTV, CAVITY...) filled with
        ``fill`` (a key of :data:`models.patient.edits.FILL_HU`)."""
        return self.add(Resection(structure, fill=fill, provenance=self._provenance(how, who)))

    def resect_region(self, region: ResectionRegion, *, fill: str = "air",
                      how: str = "manual", who: str | None = None) -> Case:
        """Add a :class:`Resection` of a drawn region (no structure), e.g.
        :meth:`ResectionRegion.below_applicator` at the applicator's tip."""
        return self.add(Resection(REGION_NAME, fill=fill, region=region,
                                  provenance=self._provenance(how, who)))

    def place_disc(self, material: str, diameter_mm: float, thickness_mm: float,
                   patient_from_applicator: np.ndarray, depth_mm: float, *,
                   how: str = "manual", who: str | None = None) -> Case:
        """Add a :class:`DiscPlacement` normal to the applicator's axis, its upstream face
        ``depth_mm`` below the end face (:meth:`DiscPlacement.below_applicator`).

        Raises
        ------
        InputError
            A material the dose engine does not have, a size or depth that is not
            positive, a disc outside the CT: nothing applied.
        """
        from models.dose.materials import shield_materials

        if material not in shield_materials():
            raise InputError(f"disc material {material!r} is not one of: "
                             f"{', '.join(shield_materials())}; nothing applied")
        return self.add(DiscPlacement.below_applicator(
            material, diameter_mm, thickness_mm, patient_from_applicator, depth_mm,
            provenance=self._provenance(how, who)))

    def _provenance(self, how: str, who: str | None) -> Provenance:
        return Provenance(who=self.who if who is None else who, how=how)

    def retract_from_sweep(self, fit: RetractionFit, *, fill: str = "air") -> Case:
        """Add the organ move a pointer sweep found
        (:func:`guidance.registration.retraction.fit_retraction`, fitted to the organ's
        preoperative surface): the edit takes the organ from where the edits put it to the
        fitted pose, so the organ ends where the sweep found it.

        Raises
        ------
        InputError
            The fit was refused (its reason, e.g. too few points or the wrong organ):
            nothing is applied.
        """
        if not fit.accepted:
            raise InputError(f"pointer sweep of {fit.structure} not applied: {fit.reason}")
        relative = fit.patient_from_retracted @ np.linalg.inv(self.retraction_of(fit.structure))
        return self.add(Retraction(fit.structure, relative, fill=fill, provenance=Provenance(
            who=self.who, how=f"pointer sweep ({fit.n_points} points, "
                              f"residual {fit.rms_mm:.1f} mm)")))

    def undo(self) -> Edit | None:
        """Take back the last edit (logged); None when there is none."""
        self._preview = None
        edit = self.edits.undo()
        if edit is not None:
            self._changed()
            if self.session_log is not None:
                self.session_log.log_anatomy_undo(
                    edit_to_json(edit), description=edit.describe(self._centroid(edit)),
                    n_edits=len(self.edits))
        return edit

    def redo(self) -> Edit | None:
        """Put back the last undone edit (logged)."""
        edit = self.edits.redo()
        if edit is not None:
            self._changed()
            if self.session_log is not None:
                self.session_log.log_anatomy_undo(
                    edit_to_json(edit), description=edit.describe(self._centroid(edit)),
                    n_edits=len(self.edits), redo=True)
        return edit

    def preview(self, structure: str, patient_from_retracted: np.ndarray, *,
                fill: str = "air") -> Case:
        """Show the organ moved by ``patient_from_retracted`` on top of the edits
        (relative to where the edits put it), without recording it.

        Raises
        ------
        InputError
            The case refuses the move (the last accepted preview stays).
        """
        edit = Retraction(structure, patient_from_retracted, fill=fill,
                          provenance=Provenance(who=self.who, how="preview"))
        candidate = EditList([*self.edits, edit]).apply(self.original)
        self._preview = edit
        self._set_case(candidate)
        return candidate

    def commit_preview(self, *, how: str = "manual") -> Case | None:
        """Record the preview as an edit (None when there is none)."""
        if self._preview is None:
            return None
        p = self._preview
        return self.add(Retraction(p.structure, p.patient_from_retracted, fill=p.fill,
                                   provenance=Provenance(who=self.who, how=how)))

    def cancel_preview(self) -> None:
        """Drop the preview: the anatomy is the edits' again."""
        if self._preview is not None:
            self._preview = None
            self._changed(save=False)

    # ---------------------------------------------------------------- internals
    def _centroid(self, edit: Edit) -> np.ndarray | None:
        s = self.original.structures.get(edit.structure)
        return None if s is None or not s.mask.any() else self.original.centroid_lps(s.name)

    def preoperative_outlines(self) -> dict[str, object]:
        """Dashed slice outlines (:class:`guidance.render.slices.Outline`) of every moved
        organ where the preoperative CT saw it, keyed ``"NAME:preoperative"``."""
        from guidance.render.anatomy_view import PREOPERATIVE_SUFFIX
        from guidance.render.slices import Outline

        out = {}
        for o in self.outlines():
            s = self.original.structures.get(o.structure)
            if s is not None:
                out[o.structure + PREOPERATIVE_SUFFIX] = Outline(s.mask, s.color_rgb,
                                                                 dashed=True)
        return out

    def _changed(self, edited: Case | None = None, *, save: bool = True) -> None:
        self._set_case(self.edits.apply(self.original) if edited is None else edited)
        if save and self.case_dir is not None:
            from models.patient.case_store import save_edits

            try:
                save_edits(self.case_dir, self.edits)
            except InputError as exc:   # the live anatomy goes on; the log has the edit
                message = f"anatomy edits not saved in the case folder: {exc}"
                log.warning("%s", message)
                if self.session_log is not None:
                    self.session_log.log_warning(message, source="anatomy")

    def _set_case(self, case: Case) -> None:
        self._edited = case
        if self.dose_service is not None:
            self.dose_service.set_case(case, preoperative=self.original)
        for listener in list(self.listeners):
            try:
                listener()
            except Exception:  # a broken view must not lose the edit
                log.exception("anatomy listener %r failed", listener)


def drag_retraction(patient_from_retracted: np.ndarray, right_lps: np.ndarray,
                    up_lps: np.ndarray, dx_mm: float, dy_mm: float) -> np.ndarray:
    """The retraction moved by a mouse drag in the 3D view: ``dx_mm`` along the view's
    right, ``dy_mm`` along its up (both unit vectors in patient LPS).

    Examples
    --------
    >>> m = drag_retraction(np.eye(4), np.array([1.0, 0, 0]), np.array([0, 0, 1.0]), 5, -2)
    >>> m[:3, 3].tolist()
    [5.0, 0.0, -2.0]
    """
    m = as_transform(patient_from_retracted, name="patient_from_retracted", rigid=True,
                     atol=1e-5)
    right, up = _unit(right_lps, "right_lps"), _unit(up_lps, "up_lps")
    move = np.eye(4)
    move[:3, 3] = float(dx_mm) * right + float(dy_mm) * up
    return move @ m


def rotate_retraction(patient_from_retracted: np.ndarray, centre_lps: np.ndarray,
                      axis_lps: np.ndarray, angle_deg: float) -> np.ndarray:
    """The retraction turned by ``angle_deg`` about ``axis_lps`` (the view direction)
    through ``centre_lps`` (the organ's current centre; patient LPS mm)."""
    m = as_transform(patient_from_retracted, name="patient_from_retracted", rigid=True,
                     atol=1e-5)
    axis = _unit(axis_lps, "axis_lps")
    c = np.asarray(centre_lps, dtype=np.float64).reshape(3)
    turn = transform_from_rotvec(np.radians(float(angle_deg)) * axis, np.zeros(3))
    turn[:3, 3] = c - turn[:3, :3] @ c
    return turn @ m


def _unit(v: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(v, dtype=np.float64).reshape(3)
    norm = float(np.linalg.norm(arr))
    if not np.isfinite(norm) or norm < 1e-9:
        raise InputError(f"{name} must be a non-zero direction, got {arr.tolist()}")
    return arr / norm


def attach_anatomy(logic, *, edits: EditList | None = None,
                   case_dir: str | Path | None = None, who: str = "") -> AnatomyEditor:
    """Give the OR monitor's logic an :class:`AnatomyEditor` and keep its views in step.

    ``logic`` is a :class:`guidance.monitor.logic.MonitorLogic` (its case, scene, session
    log and dose service are used). After every change of the anatomy: ``logic.case`` is
    the edited case (the slices show the edited CT and the organs where they are now),
    moved organs' scene meshes move rigidly (3D and AR; their silhouettes too) and get a
    dashed outline at their preoperative position, the slices a dashed preoperative outline
    (``logic.slice_outlines``), and the dose is recomputed on the edited case. Sets and
    returns ``logic.anatomy``.
    """
    from guidance.render.anatomy_view import dashed_outline_mesh, show_retractions

    editor = AnatomyEditor(logic.case, edits=edits, session_log=logic.session_log,
                           dose_service=logic.dose_service, case_dir=case_dir, who=who)
    scene = logic.scene
    originals: dict[str, np.ndarray] = {}
    colors: dict[str, tuple[float, float, float]] = {}
    outlines: dict[str, object] = {}
    for name in editor.original.structures:
        item = scene.items.get(name)
        if item is None or name == logic.target:
            continue
        # a copy of its own: the mesh is moved in place (every actor of it follows)
        scene.add(replace(item, mesh=item.mesh.copy()))
        originals[name] = np.asarray(scene.items[name].mesh.points, dtype=np.float64).copy()
        colors[name] = item.color

    def refresh() -> None:
        logic.case = editor.case
        moves = {o.structure: o.patient_from_retracted for o in editor.outlines()}
        for name in moves:
            if name in originals and name not in outlines:
                before = scene.items[name].mesh.copy()
                before.points = originals[name]
                outlines[name] = dashed_outline_mesh(before)
        show_retractions(scene, originals, moves, outlines, colors)

    editor.listeners.append(refresh)
    logic.anatomy = editor
    if len(editor.edits):
        editor._changed(save=False)
    return editor


def view_drag(camera_position_lps: np.ndarray, focal_point_lps: np.ndarray,
              view_up_lps: np.ndarray, view_angle_deg: float, height_px: int,
              centre_lps: np.ndarray, dx_px: float, dy_px: float, *,
              rotate: bool = False, deg_per_px: float = 0.5) -> np.ndarray:
    """The organ move for a mouse drag in a perspective 3D view (patient LPS, mm).

    A plain drag translates the organ in the view plane so that its centre follows the
    mouse (``dx_px`` right, ``dy_px`` down on screen, scaled at the centre's depth: the
    visible height there is ``2 d tan(view_angle / 2)``); with ``rotate`` (shift-drag) it
    turns about the viewing direction through its centre, ``deg_per_px`` per pixel of
    horizontal motion (to the right: clockwise as seen).

    Returns
    -------
    (4, 4) array
        The move to put on top of the organ's current position.
    """
    position = np.asarray(camera_position_lps, dtype=np.float64).reshape(3)
    forward = _unit(np.asarray(focal_point_lps, dtype=np.float64) - position, "view direction")
    up = np.asarray(view_up_lps, dtype=np.float64).reshape(3)
    up = _unit(up - (up @ forward) * forward, "view_up_lps")
    right = np.cross(forward, up)
    centre = np.asarray(centre_lps, dtype=np.float64).reshape(3)
    if rotate:
        return rotate_retraction(np.eye(4), centre, forward, float(dx_px) * deg_per_px)
    depth_mm = max(float((centre - position) @ forward), 1.0)
    mm_per_px = 2.0 * depth_mm * np.tan(np.radians(float(view_angle_deg)) / 2.0) / max(
        int(height_px), 1)
    return drag_retraction(np.eye(4), right, up, float(dx_px) * mm_per_px,
                           -float(dy_px) * mm_per_px)


class RetractorFollower:
    """The tracked retractor in the live monitor: "grab" couples an organ to it, the organ
    follows it (a preview, dose included), "release" records the edit.

    Runs on the UI thread with the monitor's newest frame (:class:`FrameUpdate`): the
    retractor's pose in the patient is ``inv(camera_from_patient) @ camera_from_tool`` of
    that frame, used only while the retractor is TRACKING (a held pose never moves an
    organ; while it is hidden the organ stays where it was last seen).

    Parameters
    ----------
    editor : AnatomyEditor
    tool : str
        The retractor's tool name.
    min_move_mm, min_turn_deg : float
        A new preview (and dose) only when the organ moved this much since the last one.
    """

    def __init__(self, editor: AnatomyEditor, *, tool: str = "retractor",
                 min_move_mm: float = 0.5, min_turn_deg: float = 0.5) -> None:
        self.editor = editor
        self.tool = tool
        self.min_move_mm = min_move_mm
        self.min_turn_deg = min_turn_deg
        self.coupling: RetractorCoupling | None = None
        self._shown: np.ndarray | None = None

    @property
    def coupled(self) -> bool:
        return self.coupling is not None and self.coupling.coupled

    def pose_in(self, update) -> np.ndarray | None:
        """``patient_from_retractor`` in a monitor frame, or None (not tracked now)."""
        from guidance.tracking.pose_filter import TrackingState

        result = getattr(update, "result", None)
        if result is None or result.camera_from_patient is None:
            return None
        status = result.tools.get(self.tool)
        if status is None or status.state is not TrackingState.TRACKING \
                or status.camera_from_tool is None:
            return None
        return invert_rigid(result.camera_from_patient) @ status.camera_from_tool

    def grab(self, structure: str, update) -> None:
        """Couple ``structure`` to the retractor as seen in ``update``.

        Raises
        ------
        InputError
            The retractor is not tracked in that frame, or the structure is unknown.
        """
        if structure not in self.editor.original.structures:
            raise InputError(f"no structure {structure!r} to grab")
        pose = self.pose_in(update)
        if pose is None:
            raise InputError(f"the {self.tool} is not tracked: show its markers to the "
                             "camera, then grab")
        self.coupling = RetractorCoupling(structure)
        self.coupling.grab(pose)
        self._shown = None
        if self.editor.session_log is not None:
            self.editor.session_log.log_action("retractor_grab", structure=structure)

    def update(self, update) -> bool:
        """Follow the retractor in ``update``; True when the organ was moved."""
        if not self.coupled:
            return False
        moved = self.coupling.follow(self.pose_in(update))
        if self._shown is not None:
            move_mm, turn_deg = transform_difference(moved, self._shown)
            if move_mm < self.min_move_mm and turn_deg < self.min_turn_deg:
                return False
        try:
            self.editor.preview(self.coupling.structure, moved)
        except InputError as exc:   # e.g. pulled out of the CT: the last good preview stays
            log.warning("retractor preview refused: %s", exc)
            return False
        self._shown = moved.copy()
        return True

    def release(self) -> Case | None:
        """Freeze the organ where it is and record the edit (None when not coupled).

        Raises
        ------
        InputError
            The case refuses the move (nothing is recorded; the organ goes back).
        """
        if not self.coupled:
            return None
        coupling, self.coupling = self.coupling, None
        coupling.release(who=self.editor.who)
        if self.editor.session_log is not None:
            self.editor.session_log.log_action("retractor_release",
                                               structure=coupling.structure)
        if self._shown is None:
            self.editor.cancel_preview()
            return None
        try:
            return self.editor.commit_preview(how="tracked retractor")
        except InputError:
            self.editor.cancel_preview()
            raise


class ScenarioRetraction:
    """Drives a :class:`RetractorFollower` through a simulated procedure's retraction phase,
    so the windowed demo grabs, pulls and releases the organ by itself as ``iort demo``
    does headless.

    Grabs at the first frame of the phase in which the retractor is tracked, lets the
    follower move the organ with the retractor, releases (recording the edit) at the first
    frame after the phase. Once released it does nothing more (a restarted approach does
    not grab again), and it never takes over a grab the user made.

    Parameters
    ----------
    follower : RetractorFollower
    scenario : guidance.sim.scenario.Scenario
        ``phase_at(index)`` and ``options.retraction_structure`` are used.
    """

    def __init__(self, follower: RetractorFollower, scenario) -> None:
        self.follower = follower
        self.scenario = scenario
        self.structure = scenario.options.retraction_structure
        self.grabbed = False
        self.done = False

    def step(self, update) -> str | None:
        """Look at monitor frame ``update``; ``"grab"`` or ``"release"`` when it did one."""
        result = getattr(update, "result", None)
        if self.done or result is None or result.frame is None:
            return None
        phase = self.scenario.phase_at(result.frame.index)
        if phase == "retraction" and not self.grabbed:
            if self.follower.coupled:          # the user grabbed: theirs, not the script's
                self.done = True
                return None
            try:
                self.follower.grab(self.structure, update)
            except InputError:
                return None                    # retractor not seen yet: the next frame
            self.grabbed = True
            return "grab"
        if phase == "treatment" and self.grabbed:
            self.done = True
            if self.follower.coupled:
                self.follower.release()
                return "release"
        return None
