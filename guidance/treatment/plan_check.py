"""How far the tracked applicator is from its planned pose, as a traffic light.

Plain logic (no Qt) for the surgeon view of the OR monitor. The applicator frame has its
origin at the centre of the distal end face and +z along the beam into tissue, so

* ``distance_mm`` — distance between the tracked and planned end-face centres,
* ``lateral_mm`` / ``depth_mm`` — that offset split perpendicular to / along the planned
  beam axis (depth > 0: the tracked applicator is deeper, i.e. further along +z),
* ``angle_deg`` — angle between the tracked and planned beam axes (+z),
* ``roll_deg`` — rotation about the beam axis (matters only for a bevelled end),

and the light is green when every number is within the green tolerance, yellow within the
yellow tolerance, red beyond, and grey when the pose is unknown or stale (a traffic light
must never look confident on old data).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, replace

import numpy as np

from models.base.errors import InputError
from models.base.transforms import angle_between_vectors_deg
from models.base.validation import as_positive, as_transform


class Light(enum.Enum):
    """Traffic-light state of the applicator against the plan."""

    GREEN = "green"
    YELLOW = "yellow"
    RED = "red"
    GREY = "grey"


#: How bad each light is (GREY, nothing known, is the worst: never confident on no data).
SEVERITY: dict[Light, int] = {Light.GREEN: 0, Light.YELLOW: 1, Light.RED: 2, Light.GREY: 3}


def worst_light(lights) -> Light:
    """The most severe of some lights (GREEN when none).

    Examples
    --------
    >>> worst_light([Light.GREEN, Light.RED, Light.YELLOW]).value
    'red'
    """
    return max(lights, key=SEVERITY.__getitem__, default=Light.GREEN)


#: Display colours (RGB 0-255) of the lights, chosen to read on a dark OR screen.
LIGHT_RGB: dict[Light, tuple[int, int, int]] = {
    Light.GREEN: (40, 200, 80),
    Light.YELLOW: (240, 200, 30),
    Light.RED: (230, 40, 40),
    Light.GREY: (110, 110, 110),
}


@dataclass(frozen=True)
class PlanTolerance:
    """Thresholds of the traffic light (a user setting; defaults are a starting point).

    ``green_*`` must not exceed ``yellow_*``; ``roll`` is checked only when
    ``check_roll`` (bevelled applicators).
    """

    green_distance_mm: float = 3.0
    green_angle_deg: float = 5.0
    yellow_distance_mm: float = 8.0
    yellow_angle_deg: float = 10.0
    green_roll_deg: float = 10.0
    yellow_roll_deg: float = 20.0
    check_roll: bool = False

    def __post_init__(self) -> None:
        for kind in ("distance_mm", "angle_deg", "roll_deg"):
            green = as_positive(getattr(self, f"green_{kind}"), name=f"green_{kind}")
            yellow = as_positive(getattr(self, f"yellow_{kind}"), name=f"yellow_{kind}")
            if green > yellow:
                raise InputError(f"green_{kind} ({green}) must not exceed yellow_{kind} "
                                 f"({yellow})")

    def tightened(self, distance_mm: float, angle_deg: float) -> PlanTolerance:
        """These thresholds moved inwards by a margin: what a light must also pass to
        *improve* (hysteresis, so a reading on a threshold does not flip the light)."""
        return replace(
            self, green_distance_mm=max(self.green_distance_mm - distance_mm, 1e-6),
            yellow_distance_mm=max(self.yellow_distance_mm - distance_mm, 1e-6),
            green_angle_deg=max(self.green_angle_deg - angle_deg, 1e-6),
            yellow_angle_deg=max(self.yellow_angle_deg - angle_deg, 1e-6),
            green_roll_deg=max(self.green_roll_deg - angle_deg, 1e-6),
            yellow_roll_deg=max(self.yellow_roll_deg - angle_deg, 1e-6))


@dataclass(frozen=True)
class PlanDeviation:
    """Tracked applicator pose compared with the plan (see module docstring)."""

    distance_mm: float
    lateral_mm: float
    depth_mm: float
    angle_deg: float
    roll_deg: float
    light: Light

    def text(self) -> str:
        """One line for the screen, every number with its unit."""
        depth = round(self.depth_mm, 1) + 0.0   # never "-0.0 mm"
        # no comma to strand at a line break; a narrow panel wraps between the two groups
        return (f"{self.distance_mm:.1f} mm  {self.angle_deg:.1f}°\n"
                f"lateral\u00a0{self.lateral_mm:.1f}\u00a0mm  depth\u00a0{depth:+.1f}\u00a0mm")


def compare_to_plan(patient_from_applicator: np.ndarray,
                    planned_patient_from_applicator: np.ndarray,
                    tolerance: PlanTolerance | None = None) -> PlanDeviation:
    """Distance and angle from the tracked applicator pose to the planned one.

    Parameters
    ----------
    patient_from_applicator, planned_patient_from_applicator : (4, 4) array
        Tracked and planned rigid poses of the applicator frame in patient LPS (mm).
    tolerance : PlanTolerance, optional
        Traffic-light thresholds.

    Examples
    --------
    >>> plan = np.eye(4)
    >>> moved = np.eye(4); moved[:3, 3] = [2.0, 0.0, 1.0]
    >>> dev = compare_to_plan(moved, plan)
    >>> round(dev.lateral_mm, 3), round(dev.depth_mm, 3), dev.light.value
    (2.0, 1.0, 'green')
    """
    tracked = as_transform(patient_from_applicator, name="patient_from_applicator", rigid=True)
    plan = as_transform(planned_patient_from_applicator,
                        name="planned_patient_from_applicator", rigid=True)
    tol = tolerance or PlanTolerance()
    offset = tracked[:3, 3] - plan[:3, 3]
    axis_plan = plan[:3, 2]
    depth = float(offset @ axis_plan)
    lateral = float(np.linalg.norm(offset - depth * axis_plan))
    angle = angle_between_vectors_deg(tracked[:3, 2], axis_plan)
    # roll: angle of the tracked x axis about the planned axis after removing the tilt
    x_tracked = tracked[:3, 0] - (tracked[:3, 0] @ axis_plan) * axis_plan
    roll = 0.0
    if np.linalg.norm(x_tracked) > 1e-9:
        roll = math.degrees(math.atan2(float(np.cross(plan[:3, 0], x_tracked) @ axis_plan),
                                       float(plan[:3, 0] @ x_tracked)))
    distance = float(np.linalg.norm(offset))
    return PlanDeviation(distance, lateral, depth, angle, roll,
                         traffic_light(distance, angle, tol, roll_deg=roll))


def traffic_light(distance_mm: float | None, angle_deg: float | None,
                  tolerance: PlanTolerance | None = None, *, roll_deg: float = 0.0,
                  tracking_ok: bool = True) -> Light:
    """The light for a deviation; GREY when the pose is unknown or tracking is not current."""
    tol = tolerance or PlanTolerance()
    if not tracking_ok or distance_mm is None or angle_deg is None:
        return Light.GREY
    if not (math.isfinite(distance_mm) and math.isfinite(angle_deg)):
        return Light.GREY
    roll = abs(roll_deg) if tol.check_roll else 0.0
    if (distance_mm <= tol.green_distance_mm and angle_deg <= tol.green_angle_deg
            and roll <= tol.green_roll_deg):
        return Light.GREEN
    if (distance_mm <= tol.yellow_distance_mm and angle_deg <= tol.yellow_angle_deg
            and roll <= tol.yellow_roll_deg):
        return Light.YELLOW
    return Light.RED
