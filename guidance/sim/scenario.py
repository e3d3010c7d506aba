"""A simulated IORT procedure: what the camera sees, frame by frame, with the truth.

The demo and the end-to-end tests run the real pipeline (undistortion, marker tracking,
registration, dose, overlay) on these frames and compare what it finds with the truth:

1. **Registration phase** — the pointer tip touches each skin fiducial in turn
   (``frames_per_fiducial`` frames each) while the hand-held camera sways over the field.
2. **Retraction phase** — the surgeon puts the tracked retractor's blade on the small
   bowel, grabs it (first frame of the phase), pulls it 35 mm out of the way while turning
   it 4 deg, holds, and releases it (last frame). :meth:`Scenario.retraction_event_at`
   says which frame grabs and releases, :meth:`Scenario.patient_from_retracted_at` is the
   organ's true move. ``retraction_frames=0`` leaves it out.
3. **Treatment phase** — the applicator comes in from above and to the side, tilted, and
   settles on its planned pose on the tumour bed (then only a small hand tremor).

A reference marker plate stands on a post of the table-mounted retractor, fixed to the
patient, in view of the camera. Frames are BGR uint8 with lens distortion, noise, vignetting
and light flicker (:class:`guidance.sim.camera.SimEffects`); everything random comes from
one seeded generator, so a run is repeatable.

Two renderings of the field (``ScenarioOptions.field``): ``"plain"``, the phantom's skin mesh
rendered by VTK (:class:`guidance.sim.camera.SimulatedCamera`), and ``"realistic"``, the open
abdomen with retractors, moving gloved hands and OR lighting
(:class:`guidance.sim.field.RealisticField`, ~10x faster). In the realistic field the
surgeon's hand starts reaching over the field once the registration phase is over.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pyvista as pv

from calibration.camera import CameraCalibration
from guidance.sim.camera import (
    CameraPath,
    SceneMesh,
    SimEffects,
    SimulatedCamera,
    facing_pose,
    pointer_touching,
)
from guidance.sim.field import FIELD_KINDS, FieldLayout, RealisticField, SurgeonHands
from guidance.sim.source import RegistrationScenario, ScenePose, SimulatedSource
from guidance.tracking.tools import ToolDefinition, load_builtin_tools
from models.base.errors import InputError
from models.base.transforms import invert_rigid, transform_from_rotvec
from models.patient.anatomy import MeshOptions, decimate_mesh, mask_to_mesh
from models.patient.case import Case
from models.patient.phantom import planned_patient_from_applicator

log = logging.getLogger(__name__)

#: Structures rendered by the simulated camera (what an open abdomen shows) and their colours.
VISIBLE_ANATOMY: dict[str, tuple[int, int, int]] = {"BODY": (222, 170, 150)}
#: Mean direction from the cavity to the camera (LPS): anterior, from the patient's left
#: and a little inferior, so the applicator's marker plate does not hide the cavity.
VIEW_DIRECTION = np.array([0.45, -1.0, -0.25]) / np.linalg.norm([0.45, -1.0, -0.25])


@dataclass(frozen=True)
class ScenarioOptions:
    """Settings of the simulated procedure.

    Attributes
    ----------
    frames : int or None
        Total frames (registration + treatment); None: no end, the applicator stays on its
        plan (with tremor) after its approach until :meth:`Scenario.restart_approach`.
    frames_per_fiducial : int or None
        Frames with the pointer on each fiducial; ``None`` picks 1–3 from ``frames``.
    approach_frames : int or None
        Frames of the applicator's approach; ``None``: 40 % of the treatment phase.
    frame_interval_s : float
        Time between frames (s); 1/15 s is a typical camera stream.
    seed : int
        Seed of the generator that drives noise, tremor and camera sway.
    effects : SimEffects
        Imaging effects (noise, lighting, blur, dropout).
    camera_distance_mm : float
        Distance from the camera to the cavity centre.
    tremor_mm, tremor_deg : float
        Standard deviation of the hand tremor of the resting applicator.
    approach_offset_mm : (3,) float
        Where the applicator starts, relative to its planned end-face centre (LPS mm).
    approach_tilt_deg : float
        Tilt of the applicator at the start of its approach.
    max_triangles : int
        Triangle budget of the rendered anatomy (plain field).
    field : {"plain", "realistic"}
        How the field is rendered (see the module docstring).
    hand_period_s : float
        Realistic field: time between the surgeon's hand passes over the field.
    realtime : bool
        Deliver frames on the wall clock (``frame_interval_s`` apart), as a camera does.
    retraction_frames : int or None
        Frames of the retraction phase; ``None`` picks ``frames // 6`` (2 to 12, none when
        fewer than 12 frames); 0 leaves it out.
    retraction_structure : str
        The organ the retractor holds.
    retraction_mm, retraction_deg : (3,) float, float
        Its move at release: translation of its centre (LPS mm) and turn about the patient's
        superior axis through its centre (deg).
    """

    frames: int | None = 60
    frames_per_fiducial: int | None = None
    approach_frames: int | None = None
    frame_interval_s: float = 1.0 / 15.0
    seed: int = 0
    effects: SimEffects = field(default_factory=SimEffects)
    camera_distance_mm: float = 430.0
    tremor_mm: float = 0.2
    tremor_deg: float = 0.1
    approach_offset_mm: tuple[float, float, float] = (12.0, -35.0, -8.0)
    approach_tilt_deg: float = 10.0
    max_triangles: int = 60_000
    field: str = "plain"
    hand_period_s: float = 8.0
    realtime: bool = False
    retraction_frames: int | None = None
    retraction_structure: str = "BOWEL"
    retraction_mm: tuple[float, float, float] = (12.0, -33.0, 0.0)
    retraction_deg: float = 4.0


#: Smoothing of the surfaces the simulated camera films: stronger than the clinical meshes
#: so the skin shows no terraces of the CT's slice spacing (what a camera sees is smooth).
CAMERA_SURFACE = MeshOptions(smoothing_iterations=60, pass_band=0.005)


def _camera_surface(case: Case, name: str, max_triangles: int) -> pv.PolyData:
    """A structure's surface as the simulated camera films it (LPS mm, decimated)."""
    mesh = mask_to_mesh(case.structure(name).mask, case.ct.patient_from_voxel,
                        options=CAMERA_SURFACE)
    return decimate_mesh(mesh, max_triangles)


def default_camera(image_size: tuple[int, int] = (1280, 720)) -> CameraCalibration:
    """The simulated camera's calibration: a 1280x720 HD camera with mild barrel distortion.

    Focal length 1000 px (a 65 deg horizontal field of view), principal point a few pixels
    off centre, ``k1 = -0.06, k2 = 0.02``.
    """
    width, height = image_size
    scale = width / 1280.0
    k = np.array([[1000.0 * scale, 0.0, (width - 1) / 2.0 + 3.0 * scale],
                  [0.0, 1000.0 * scale, (height - 1) / 2.0 - 2.0 * scale],
                  [0.0, 0.0, 1.0]])
    return CameraCalibration(camera_matrix=k, dist_coeffs=np.array([-0.06, 0.02, 0.0, 0.0, 0.0]),
                             image_size=(width, height), rms_px=0.0,
                             per_view_px=np.zeros(0))


class Scenario:
    """A simulated procedure on a case (see the module docstring): script and frame source.

    Use :meth:`source` as the guidance loop's frame source; the truth of each frame is in
    ``Frame.truth`` and in :meth:`patient_from_applicator_at` / :meth:`fiducial_at`.

    Parameters
    ----------
    case : Case
        The patient (the built-in phantom: needs BODY, CAVITY, CTV and fiducials).
    calibration : CameraCalibration
        Intrinsics and distortion of the simulated camera (:func:`default_camera`).
    options : ScenarioOptions
        Frames, seed, effects.
    tools : dict of str to ToolDefinition, optional
        Reference, pointer and applicator (default: the built-in tools).
    applicator_diameter_mm : float
        Diameter of the rendered applicator tube.
    """

    def __init__(self, case: Case, calibration: CameraCalibration,
                 options: ScenarioOptions | None = None, *,
                 tools: dict[str, ToolDefinition] | None = None,
                 applicator_diameter_mm: float = 60.0) -> None:
        self.case = case
        self.calibration = calibration
        self.options = options or ScenarioOptions()
        if self.options.frames is not None and self.options.frames < 1:
            raise InputError(f"frames must be at least 1, got {self.options.frames}")
        if self.options.field not in FIELD_KINDS:
            raise InputError(f"field {self.options.field!r} is not one of {list(FIELD_KINDS)}")
        self.tools = tools or load_builtin_tools()
        missing = {"reference", "pointer", "applicator"} - set(self.tools)
        if missing:
            raise InputError(f"the scenario needs the tools {sorted(missing)}")
        if not case.fiducials_lps:
            raise InputError("the case has no fiducials to register with")
        self.fiducial_names = sorted(case.fiducials_lps)
        self.planned_patient_from_applicator = planned_patient_from_applicator(case)
        self.cavity_centre_lps = self._cavity_opening_centre()
        self.patient_from_reference = self._reference_pose()
        self._rng = np.random.default_rng(self.options.seed)
        self.hands: SurgeonHands | None = None
        self._camera = self._renderer(applicator_diameter_mm)
        self._path = CameraPath(target_mm=self.cavity_centre_lps,
                                view_dir=VIEW_DIRECTION,
                                distance_mm=self.options.camera_distance_mm, sway_mm=30.0,
                                period_s=5.0, up_hint=np.array([0.0, 0.0, 1.0]))
        self._registration = RegistrationScenario(
            camera_path=self._path, tools=self.tools,
            patient_from_reference=self.patient_from_reference,
            fiducials_patient_mm={n: case.fiducials_lps[n] for n in self.fiducial_names},
            frames_per_fiducial=self.frames_per_fiducial, applicator_frames=0,
            lean_toward_mm=self.cavity_centre_lps)
        self._applicator_poses: dict[int, np.ndarray] = {}
        self._retractor_grab_pose = np.eye(4)
        if self.retraction_frames:
            if "retractor" not in self.tools:
                raise InputError("the scenario's retraction step needs the 'retractor' tool "
                                 "(or retraction_frames=0)")
            camera_side = self.cavity_centre_lps + VIEW_DIRECTION * 400.0
            self._retractor_grab_pose = pointer_touching(
                self.tools["retractor"], self._blade_point(), camera_side,
                lean_toward_mm=self.cavity_centre_lps)
        self._approach_start: int | None = None   # frame where a restarted approach began
        self.last_index = -1                      # newest frame scripted

    def _renderer(self, applicator_diameter_mm: float) -> SimulatedCamera | RealisticField:
        """The simulated camera of ``options.field``."""
        calibration = self.calibration
        if self.options.field == "realistic":
            layout = FieldLayout.for_case(self.case, self.cavity_centre_lps)
            self.hands = SurgeonHands(layout, np.random.default_rng(self.options.seed + 1),
                                      period_s=self.options.hand_period_s,
                                      start_s=self.registration_frames
                                      * self.options.frame_interval_s)
            return RealisticField(
                self.tools, calibration.camera_matrix, image_size=calibration.image_size,
                dist_coeffs=calibration.dist_coeffs, effects=self.options.effects,
                rng=self._rng, layout=layout, applicator_diameter_mm=applicator_diameter_mm,
                patient_from_reference_post=self.patient_from_reference)
        meshes = [SceneMesh(_camera_surface(self.case, name, self.options.max_triangles),
                            colour) for name, colour in VISIBLE_ANATOMY.items()]
        return SimulatedCamera(
            meshes, self.tools, calibration.camera_matrix, image_size=calibration.image_size,
            dist_coeffs=calibration.dist_coeffs, effects=self.options.effects, rng=self._rng,
            applicator_diameter_mm=applicator_diameter_mm)

    @property
    def end_index(self) -> float:
        """First frame past the procedure (``inf`` without an end)."""
        return np.inf if self.options.frames is None else self.options.frames

    # -- layout -------------------------------------------------------------------------
    @property
    def frames_per_fiducial(self) -> int:
        """Frames the pointer rests on each fiducial."""
        if self.options.frames_per_fiducial is not None:
            return max(1, int(self.options.frames_per_fiducial))
        if self.options.frames is None:
            return 3
        return int(np.clip(self.options.frames // 20, 1, 3))

    @property
    def registration_frames(self) -> int:
        """Number of frames of the registration phase."""
        return int(min(self.end_index, self.frames_per_fiducial * len(self.fiducial_names)))

    @property
    def retraction_frames(self) -> int:
        """Number of frames of the retraction phase (after the registration)."""
        frames = self.options.frames         # None (no end): as many as the most
        wanted = self.options.retraction_frames
        if wanted is None:
            wanted = 12 if frames is None else (0 if frames < 12 else
                                                int(np.clip(frames // 6, 2, 12)))
        if wanted and self.options.retraction_structure not in self.case.structures:
            return 0
        # leave at least one frame to the treatment
        room = wanted if frames is None else frames - self.registration_frames - 1
        return max(0, min(int(wanted), room)) if wanted >= 2 and room >= 2 else 0

    @property
    def treatment_start(self) -> int:
        """Index of the first frame of the treatment phase."""
        return self.registration_frames + self.retraction_frames

    def _cavity_opening_centre(self) -> np.ndarray:
        """Centre of the cavity at skin level: the point the camera looks at (LPS mm)."""
        cavity = self.case.structure("CAVITY").mask
        kji = np.argwhere(cavity)
        pts = self.case.ct.voxel_to_patient(kji[:, ::-1].astype(np.float64))
        anterior = pts[:, 1] <= np.percentile(pts[:, 1], 10)
        return pts[anterior].mean(axis=0)

    def _reference_pose(self) -> np.ndarray:
        """Reference plate on a retractor post superior-left of the cavity, facing the camera."""
        position = self.cavity_centre_lps + np.array([-150.0, -40.0, 30.0])
        camera_side = self.cavity_centre_lps + VIEW_DIRECTION * 400.0
        return facing_pose(position, camera_side, up_hint=np.array([0.0, 0.0, 1.0]))

    # -- motion -------------------------------------------------------------------------
    def _applicator_pose(self, step: int, steps: int) -> np.ndarray:
        """True applicator pose: approach over the first 40 % of the phase, then tremor."""
        planned = self.planned_patient_from_applicator
        approach = max(1, int(self.options.approach_frames if self.options.approach_frames
                              is not None else 0.4 * steps))
        remaining = max(0.0, 1.0 - step / approach)
        ease = remaining ** 2 * (3.0 - 2.0 * remaining)  # smooth step
        tilt = transform_from_rotvec(
            np.radians([self.options.approach_tilt_deg * ease, 0.0, 0.0]), np.zeros(3))
        pose = planned @ tilt
        pose[:3, 3] = planned[:3, 3] + np.asarray(self.options.approach_offset_mm) * ease
        tremor = transform_from_rotvec(
            np.radians(self._rng.normal(0.0, self.options.tremor_deg, 3)),
            self._rng.normal(0.0, self.options.tremor_mm, 3))
        return pose @ tremor

    # -- frames -------------------------------------------------------------------------
    def phase_at(self, index: int) -> str:
        """``"registration"``, ``"retraction"`` or ``"treatment"`` for frame ``index``."""
        if index < self.registration_frames:
            return "registration"
        return "retraction" if index < self.treatment_start else "treatment"

    # -- retraction -----------------------------------------------------------------------
    def retraction_event_at(self, index: int) -> str | None:
        """``"grab"`` on the retraction phase's first frame, ``"release"`` on its last."""
        if not self.retraction_frames:
            return None
        if index == self.registration_frames:
            return "grab"
        if index == self.treatment_start - 1:
            return "release"
        return None

    def _retraction_share(self, index: int) -> float:
        """0 at the grab, 1 from the end of the pull (a smooth step over 20-80 %)."""
        n = self.retraction_frames
        if not n or index < self.registration_frames:
            return 0.0
        if index >= self.treatment_start:
            return 1.0
        x = (index - self.registration_frames) / max(1, n - 1)
        x = float(np.clip((x - 0.2) / 0.6, 0.0, 1.0))
        return x * x * (3.0 - 2.0 * x)

    def patient_from_retracted_at(self, index: int) -> np.ndarray:
        """The held organ's true move in frame ``index`` (identity before the grab)."""
        share = self._retraction_share(index)
        centre = self._retraction_centre
        move = transform_from_rotvec(
            np.radians([0.0, 0.0, self.options.retraction_deg * share]), np.zeros(3))
        move[:3, 3] = (centre - move[:3, :3] @ centre
                       + share * np.asarray(self.options.retraction_mm, dtype=np.float64))
        return move

    @property
    def _retraction_centre(self) -> np.ndarray:
        return self.case.centroid_lps(self.options.retraction_structure)

    def patient_from_retractor_at(self, index: int) -> np.ndarray | None:
        """True pose of the retractor tool in frame ``index`` (None outside the phase)."""
        if self.phase_at(index) != "retraction":
            return None
        return self.patient_from_retracted_at(index) @ self._retractor_grab_pose

    def _blade_point(self) -> np.ndarray:
        """Where the blade takes the organ: its most anterior voxel near the field."""
        name = self.options.retraction_structure
        kji = np.argwhere(self.case.structure(name).mask)
        pts = self.case.ct.voxel_to_patient(kji[:, ::-1].astype(np.float64))
        near = np.linalg.norm(pts - self.cavity_centre_lps, axis=1)
        close = pts[near <= np.percentile(near, 5)]
        return close[np.argmin(close[:, 1])]

    def fiducial_at(self, index: int) -> str | None:
        """Fiducial the pointer touches in frame ``index`` (None in the treatment phase)."""
        return self._registration.fiducial_at(index) if index < self.registration_frames \
            else None

    def patient_from_applicator_at(self, index: int) -> np.ndarray | None:
        """True applicator pose in frame ``index`` (None in the registration phase)."""
        if index < self.treatment_start or index >= self.end_index:
            return None
        if index not in self._applicator_poses:
            start = self.treatment_start if self._approach_start is None \
                else self._approach_start
            steps = self.end_index - self.treatment_start
            self._applicator_poses[index] = self._applicator_pose(
                max(0, index - start), int(min(steps, 10 ** 9)))
        return self._applicator_poses[index]

    def restart_approach(self) -> bool:
        """Start the applicator's approach again from the next frame (the registration and
        the retraction are kept); False (nothing done) before the treatment phase."""
        if self.last_index < self.treatment_start:
            return False
        self._approach_start = self.last_index + 1
        self._applicator_poses.clear()
        return True

    def describe(self, index: int) -> str:
        """What the simulated procedure does at frame ``index``, for the screen."""
        if index < self.registration_frames:
            name = self.fiducial_at(index)
            k = self.fiducial_names.index(name) + 1 if name in self.fiducial_names else 0
            return f"registration: pointer on {name} ({k}/{len(self.fiducial_names)})"
        if index >= self.end_index:
            return "ended"
        if index < self.treatment_start:
            return (f"retraction: the retractor pulls the "
                    f"{self.options.retraction_structure} out of the field")
        start = self.treatment_start if self._approach_start is None \
            else self._approach_start
        steps = self.end_index - self.treatment_start
        approach = self.options.approach_frames if self.options.approach_frames is not None \
            else 0.4 * steps
        if index - start < approach:
            return "approach: applicator coming in to the plan"
        return "placement: applicator on the plan (hand tremor)"

    def __call__(self, index: int, t_s: float) -> ScenePose | None:
        """The scene of frame ``index`` (a :class:`SimulatedSource` script)."""
        if index >= self.end_index:
            return None
        hands = self.hands.at(t_s) if self.hands is not None else ()
        self.last_index = max(self.last_index, index)
        if index < self.registration_frames:
            scene = self._registration(index, t_s)
            return ScenePose(scene.camera_from_patient, scene.patient_from_tool, hands)
        if index < self.treatment_start:
            return ScenePose(self._path.camera_from_frame(t_s),
                             {"reference": self.patient_from_reference,
                              "retractor": self.patient_from_retractor_at(index)}, hands)
        tool_from_applicator = self.tools["applicator"].tool_from_applicator
        poses = {"reference": self.patient_from_reference,
                 "applicator": self.patient_from_applicator_at(index)
                 @ invert_rigid(tool_from_applicator)}
        return ScenePose(self._path.camera_from_frame(t_s), poses, hands)

    def source(self, *, realtime: bool = False) -> SimulatedSource:
        """A frame source that renders this procedure (it owns the renderer); ``realtime``
        (or ``options.realtime``) follows the wall clock (frames the renderer is too slow
        for are skipped)."""
        return SimulatedSource(self._camera, self, n_frames=self.options.frames,
                               fps=1.0 / self.options.frame_interval_s,
                               realtime=realtime or self.options.realtime)

    def close(self) -> None:
        """Release the renderer."""
        self._camera.close()

    def __enter__(self) -> Scenario:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
