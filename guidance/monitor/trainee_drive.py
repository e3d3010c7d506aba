"""The simulated applicator a trainee drives, and the hints that guide it (no Qt).

* :class:`ApplicatorDriver` — the applicator's pose in patient LPS (mm). Translate, tilt
  and roll commands are velocities integrated on the wall clock between press and release
  (or for a given duration), so the motion does not depend on the frame or key-repeat rate.
  Directions are the patient's (:data:`ANATOMICAL_DIRECTIONS_LPS`: left = +x, posterior =
  +y, cranial = +z); a tilt turns the beam axis towards a direction about the end-face
  centre; a roll turns the applicator about its beam axis (clockwise looking down the beam
  = about +z), which matters for a bevelled end.
* :func:`hint_for` — "move 3 mm cranial; tilt 2° left; turn 5° clockwise" from a tracked
  pose to the plan.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from guidance.monitor.trainee_scenario import ANATOMICAL_DIRECTIONS_LPS, tilt_toward
from guidance.treatment.plan_check import compare_to_plan
from models.base.errors import InputError
from models.base.transforms import transform_from_rotvec
from models.base.validation import as_transform

MOTIONS = ("translate", "tilt", "roll")
#: Roll directions: about the beam axis, as seen looking down the beam (+z).
ROLL_DIRECTIONS = ("clockwise", "counterclockwise")


def _direction(name: str) -> np.ndarray:
    try:
        return np.array(ANATOMICAL_DIRECTIONS_LPS[name])
    except KeyError:
        raise InputError(f"direction {name!r} unknown; choose one of: "
                         f"{', '.join(ANATOMICAL_DIRECTIONS_LPS)}") from None


def _check_motion(motion: str, direction: str) -> None:
    if motion not in MOTIONS:
        raise InputError(f"motion {motion!r} unknown; choose one of: {', '.join(MOTIONS)}")
    if motion == "roll":
        if direction not in ROLL_DIRECTIONS:
            raise InputError(f"roll direction {direction!r} unknown; choose one of: "
                             f"{', '.join(ROLL_DIRECTIONS)}")
    else:
        _direction(direction)


@dataclass(frozen=True)
class DriveOptions:
    """Speeds of the simulated applicator while a command is held."""

    speed_mm_s: float = 10.0
    tilt_deg_s: float = 5.0
    roll_deg_s: float = 10.0


class ApplicatorDriver:
    """The simulated applicator's pose (``patient_from_applicator``, LPS mm), moved by held
    commands integrated on the wall clock (thread-safe: the capture thread reads it)."""

    def __init__(self, patient_from_applicator: np.ndarray, *,
                 options: DriveOptions | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._pose = as_transform(patient_from_applicator, name="patient_from_applicator",
                                  rigid=True).copy()
        self.options = options or DriveOptions()
        self.clock = clock
        self._t = clock()
        self._active: dict[tuple[str, str], tuple[float, float | None]] = {}
        self._lock = threading.Lock()

    def _apply(self, motion: str, direction: str, amount: float) -> None:
        if motion == "translate":
            self._pose[:3, 3] += amount * _direction(direction)
        elif motion == "tilt":
            self._pose = tilt_toward(self._pose, _direction(direction), amount)
        else:
            _check_motion(motion, direction)
            sign = 1.0 if direction == "clockwise" else -1.0   # +z looking down the beam
            turn = transform_from_rotvec(np.radians([0.0, 0.0, sign * amount]), np.zeros(3))
            self._pose = self._pose @ turn

    def _rate(self, motion: str) -> float:
        return {"translate": self.options.speed_mm_s, "tilt": self.options.tilt_deg_s,
                "roll": self.options.roll_deg_s}[motion]

    def _integrate(self, now: float) -> None:
        for key, (start, end) in list(self._active.items()):
            a, b = max(start, self._t), now if end is None else min(end, now)
            if b > a:
                self._apply(*key, self._rate(key[0]) * (b - a))
            if end is not None and end <= now:
                del self._active[key]
        self._t = max(self._t, now)

    def pose(self, now_s: float | None = None) -> np.ndarray:
        """The pose at ``now_s`` (default: the clock)."""
        with self._lock:
            self._integrate(self.clock() if now_s is None else now_s)
            return self._pose.copy()

    @property
    def moving(self) -> bool:
        with self._lock:
            return bool(self._active)

    def hold(self, motion: str, direction: str, *, now_s: float | None = None,
             for_s: float | None = None) -> None:
        """Start moving (``translate`` at ``speed_mm_s`` / ``tilt`` at ``tilt_deg_s``)
        towards ``direction`` (``roll`` at ``roll_deg_s`` about the beam axis,
        :data:`ROLL_DIRECTIONS`) until :meth:`release`, or for ``for_s`` seconds."""
        _check_motion(motion, direction)
        with self._lock:
            now = self.clock() if now_s is None else now_s
            self._integrate(now)
            self._active[(motion, direction)] = (now, None if for_s is None else now + for_s)

    def release(self, motion: str, direction: str, *, now_s: float | None = None) -> None:
        with self._lock:
            self._integrate(self.clock() if now_s is None else now_s)
            self._active.pop((motion, direction), None)

    def release_all(self, *, now_s: float | None = None) -> None:
        with self._lock:
            self._integrate(self.clock() if now_s is None else now_s)
            self._active.clear()

    def step(self, motion: str, direction: str, amount: float) -> None:
        """Move at once by ``amount`` (mm or deg)."""
        with self._lock:
            self._integrate(self.clock())
            self._apply(motion, direction, float(amount))

    def translate_by(self, offset_lps_mm: np.ndarray) -> None:
        """Move at once by a vector (patient LPS, mm), e.g. a mouse drag."""
        offset = np.asarray(offset_lps_mm, dtype=np.float64).reshape(3)
        with self._lock:
            self._integrate(self.clock())
            self._pose[:3, 3] += offset

    def move_patient(self, patient_new_from_patient_old: np.ndarray) -> None:
        """The patient moved under the applicator held still: re-express the pose."""
        with self._lock:
            self._integrate(self.clock())
            self._pose = patient_new_from_patient_old @ self._pose


# --------------------------------------------------------------------- hints
_AXIS_WORDS = (("left", "right"), ("posterior", "anterior"), ("cranial", "caudal"))


def _words(vector: np.ndarray, minimum: float) -> tuple[tuple[str, float], ...]:
    parts = [(_AXIS_WORDS[a][0 if v > 0 else 1], abs(float(v))) for a, v in enumerate(vector)
             if abs(v) >= minimum]
    return tuple(sorted(parts, key=lambda p: -p[1]))


@dataclass(frozen=True)
class Hint:
    """What to do to reach the plan, in the patient's directions.

    ``moves_mm`` / ``tilts_deg``: (direction, amount) pairs, largest first; ``move_lps_mm``
    the translation still needed (LPS) and ``tilt_lps`` the beam-axis turn needed (LPS
    vector, length in degrees) — what the overlay's arrows draw.
    """

    moves_mm: tuple[tuple[str, float], ...]
    tilts_deg: tuple[tuple[str, float], ...]
    move_lps_mm: tuple[float, float, float]
    tilt_lps_deg: tuple[float, float, float]
    #: (direction, deg) about the beam axis (a bevelled end's orientation), or None.
    roll_deg: tuple[str, float] | None = None

    @property
    def on_plan(self) -> bool:
        return not self.moves_mm and not self.tilts_deg and self.roll_deg is None

    def text(self) -> str:
        if self.on_plan:
            return "on plan - hold still and confirm"
        parts = []
        if self.moves_mm:
            parts.append("move " + ", ".join(f"{v:.0f} mm {d}" if v >= 1.0 else
                                             f"{v:.1f} mm {d}" for d, v in self.moves_mm))
        if self.tilts_deg:
            parts.append("tilt " + ", ".join(f"{v:.0f}° {d}" if v >= 1.0 else
                                             f"{v:.1f}° {d}" for d, v in self.tilts_deg))
        if self.roll_deg is not None:
            d, v = self.roll_deg
            parts.append(f"turn {v:.0f}° {d}" if v >= 1.0 else f"turn {v:.1f}° {d}")
        return "; ".join(parts)


def hint_for(patient_from_applicator: np.ndarray, planned_patient_from_applicator: np.ndarray,
             *, min_mm: float = 0.5, min_deg: float = 0.5, roll: bool = False) -> Hint:
    """The hint from a tracked pose to the plan (both LPS mm).

    The move is the end-face centre's offset to the planned one, split on the patient axes;
    the tilt turns the beam axis onto the planned one, the angle split on the patient axes
    in proportion to the direction it must turn to (small-angle reading of
    :func:`~guidance.monitor.trainee_scenario.tilt_toward`). With ``roll`` (a bevelled
    end) also the turn about the beam axis (:func:`compare_to_plan`'s roll). Parts below
    ``min_mm`` / ``min_deg`` are left out.

    Examples
    --------
    >>> plan = np.eye(4)
    >>> pose = np.eye(4); pose[:3, 3] = (0.0, 0.0, -3.0)
    >>> hint_for(pose, plan).text()
    'move 3 mm cranial'
    """
    pose = as_transform(patient_from_applicator, name="patient_from_applicator", rigid=True)
    plan = as_transform(planned_patient_from_applicator,
                        name="planned_patient_from_applicator", rigid=True)
    move = plan[:3, 3] - pose[:3, 3]
    current, wanted = pose[:3, 2], plan[:3, 2]
    towards = wanted - (wanted @ current) * current
    norm = float(np.linalg.norm(towards))
    angle = float(np.degrees(np.arctan2(norm, float(wanted @ current))))
    tilt = towards / norm * angle if norm > 1e-12 else np.zeros(3)
    # a tilt "towards" the patient axis the beam runs along is not a direction to say
    words = tilt.copy()
    words[int(np.argmax(np.abs(current)))] = 0.0
    if np.linalg.norm(words) > 1e-12:
        words *= angle / np.linalg.norm(words)
    turn = None
    if roll:
        roll_deg = compare_to_plan(pose, plan).roll_deg   # tracked x about the planned axis
        if abs(roll_deg) >= min_deg:
            turn = ("counterclockwise" if roll_deg > 0 else "clockwise", abs(roll_deg))
    return Hint(_words(move, min_mm), _words(words, min_deg), tuple(float(v) for v in move),
                tuple(float(v) for v in tilt), turn)
