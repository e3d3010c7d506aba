"""The simulated camera as a frame source: a scripted scene rendered frame by frame."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from guidance.frames.base import Frame, FrameSource
from guidance.sim.camera import SimulatedCamera, pointer_touching
from models.base.transforms import invert_rigid


@dataclass(frozen=True)
class ScenePose:
    """Where everything is at one instant.

    Attributes
    ----------
    camera_from_patient : (4, 4) array
    patient_from_tool : mapping name -> (4, 4) array
        Tools not listed are not in the scene.
    hands : sequence of guidance.sim.field.HandPose
        Gloved hands (drawn by the realistic field only).
    """

    camera_from_patient: np.ndarray
    patient_from_tool: Mapping[str, np.ndarray]
    hands: Sequence = ()


class SimulatedSource(FrameSource):
    """Frames from a simulated camera following a script.

    Parameters
    ----------
    camera : SimulatedCamera or guidance.sim.field.RealisticField
        The renderer (closed together with the source unless ``own_camera=False``).
    script : callable (index, t_s) -> ScenePose or None
        Scene at frame ``index`` / time ``t_s``; None ends the stream.
    n_frames : int, optional
        Stop after this many frames.
    fps : float
        Simulation clock: ``t_s = index / fps``.
    realtime : bool
        Follow the wall clock: frame ``index`` is the one due ``t_s`` seconds after the first
        frame was rendered. A renderer slower than ``fps`` skips frames instead of slowing
        the procedure down; a faster one waits for each frame's time (as a camera does).

    Each frame carries its :class:`~guidance.sim.camera.SimTruth` in ``Frame.truth``.
    """

    def __init__(self, camera: SimulatedCamera,
                 script: Callable[[int, float], ScenePose | None], *,
                 n_frames: int | None = None, fps: float = 30.0, camera_id: str = "simulated",
                 own_camera: bool = True, realtime: bool = False) -> None:
        super().__init__(camera_id)
        self.camera = camera
        self.script = script
        self.n_frames = n_frames
        self.fps = float(fps)
        self.own_camera = own_camera
        self.realtime = bool(realtime)
        self._index = 0
        self._start_s: float | None = None
        self._closed = threading.Event()

    def _open(self) -> None:
        self._index = 0
        self._start_s = None
        self._closed.clear()

    def _pace(self, t_s: float) -> bool:
        """Wait until ``t_s`` after the first frame (False when closed meanwhile)."""
        now = time.monotonic()
        if self._start_s is None:
            self._start_s = now
        wait = self._start_s + t_s - now
        return not (wait > 0 and self._closed.wait(wait))

    def _read(self) -> Frame | None:
        if self.realtime and self._start_s is not None:
            now = time.monotonic()
            self._index = max(self._index, int((now - self._start_s) * self.fps))
        if self.n_frames is not None and self._index >= self.n_frames:
            return None
        index = self._index
        t_s = index / self.fps
        scene = self.script(index, t_s)
        if scene is None:
            return None
        self._index += 1
        hands = {"patient_from_hands": scene.hands} if scene.hands else {}
        shot = self.camera.render(scene.camera_from_patient, scene.patient_from_tool, **hands)
        if self.realtime:
            if self._start_s is None:
                # the clock starts once the first frame is out (the renderer's start-up, often
                # seconds, would otherwise skip the first fiducial)
                self._start_s = time.monotonic() - t_s
            elif not self._pace(t_s):
                return None
        return Frame(image=shot.image, timestamp_s=t_s, camera_id=self.camera_id, index=index,
                     truth=shot.truth)

    def _close(self) -> None:
        self._closed.set()
        if self.own_camera:
            self.camera.close()


@dataclass
class RegistrationScenario:
    """A scripted session for the simulated camera (demo, tests, benchmarks).

    The camera follows ``camera_path``; the reference plate stays fixed on the patient;
    the pointer touches each fiducial in turn for ``frames_per_fiducial`` frames (plate
    facing the camera, leaning toward ``lean_toward_mm``); then the applicator sits at
    ``patient_from_applicator`` for ``applicator_frames`` frames.

    Use it as the ``script`` of :class:`SimulatedSource`; :meth:`fiducial_at` tells which
    fiducial the pointer touches in a frame (to feed a
    :class:`~guidance.registration.fiducials.FiducialCollector`).

    Attributes
    ----------
    camera_path : object with ``camera_from_frame(t_s) -> (4, 4)``
        E.g. :class:`guidance.sim.camera.CameraPath` around a point in patient LPS.
    tools : mapping name -> ToolDefinition
    patient_from_reference : (4, 4) array
    fiducials_patient_mm : mapping name -> (3,) array
    patient_from_applicator : (4, 4) array or None
    """

    camera_path: object
    tools: Mapping[str, object]
    patient_from_reference: np.ndarray
    fiducials_patient_mm: Mapping[str, np.ndarray]
    patient_from_applicator: np.ndarray | None = None
    frames_per_fiducial: int = 10
    applicator_frames: int = 30
    lean_toward_mm: np.ndarray | None = None

    @property
    def n_frames(self) -> int:
        """Frames in the whole session."""
        n_app = self.applicator_frames if self.patient_from_applicator is not None else 0
        return self.frames_per_fiducial * len(self.fiducials_patient_mm) + n_app

    def fiducial_at(self, index: int) -> str | None:
        """Name of the fiducial the pointer touches in frame ``index`` (None after)."""
        names = list(self.fiducials_patient_mm)
        k = index // self.frames_per_fiducial
        return names[k] if 0 <= k < len(names) else None

    def __call__(self, index: int, t_s: float) -> ScenePose | None:
        if index >= self.n_frames:
            return None
        camera_from_patient = self.camera_path.camera_from_frame(t_s)
        eye = invert_rigid(camera_from_patient)[:3, 3]
        poses = {"reference": self.patient_from_reference}
        name = self.fiducial_at(index)
        if name is not None:
            poses["pointer"] = pointer_touching(self.tools["pointer"],
                                                self.fiducials_patient_mm[name], eye,
                                                lean_toward_mm=self.lean_toward_mm)
        elif self.patient_from_applicator is not None:
            tool_from_applicator = self.tools["applicator"].tool_from_applicator
            poses["applicator"] = self.patient_from_applicator @ invert_rigid(
                tool_from_applicator)
        return ScenePose(camera_from_patient, poses)
