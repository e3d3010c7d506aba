"""Trainee scenarios as data: ``assets/scenarios/<name>.json`` on the built-in phantom.

A scenario says what the trainee must achieve and what will go wrong on the way: the beam
(energy, applicator, bevel, shielding disc, bolus, prescription), the target (the phantom's
tumour bed, optionally only down to ``max_depth_mm`` below its surface), the intended plan
(the phantom's planned pose, tilted for a bevelled end, raised by the bolus the applicator
sits on), organs to spare with their limits, where the applicator starts, the time limit,
the faults injected on the way (time, kind) and whether hints are shown.

The file format is :class:`ScenarioFile` (one pydantic schema, checked where the file is
read, like every input file: one line naming the file and field when it is wrong).
:func:`load_scenario` takes a name among :func:`scenario_names` or a path;
:func:`scenario_case` adds the scenario's target to the phantom; :meth:`Scenario.plan`
is the intended ``patient_from_applicator``.

Frames: patient LPS (mm); the applicator frame has its origin at the centre of the end
face and +z along the beam into tissue (``docs/architecture.md``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from guidance.treatment.dose_check import PlanLimits, load_plan_limits
from guidance.treatment.dose_service import BeamChoice
from models.base.errors import InputError
from models.base.files import read_json_file
from models.base.schema import FileSchema, bounded, check_file
from models.base.transforms import transform_from_rotvec
from models.patient.case import Case, Structure

#: Folder of the shipped scenarios (under ``assets/``).
SCENARIO_ASSET_DIR = "scenarios"
#: Faults a scenario (or the trainee's instructor, on demand) can inject.
FAULT_KINDS = ("marker_occlusion", "fiducial_wrong", "plate_slip", "patient_motion",
               "camera_bump")
#: Directions of the patient (LPS unit vectors): the words of hints and drive commands.
ANATOMICAL_DIRECTIONS_LPS: dict[str, tuple[float, float, float]] = {
    "left": (1.0, 0.0, 0.0), "right": (-1.0, 0.0, 0.0),
    "posterior": (0.0, 1.0, 0.0), "anterior": (0.0, -1.0, 0.0),
    "cranial": (0.0, 0.0, 1.0), "caudal": (0.0, 0.0, -1.0)}
Direction = Literal["left", "right", "posterior", "anterior", "cranial", "caudal"]
FaultKind = Literal["marker_occlusion", "fiducial_wrong", "plate_slip", "patient_motion",
                    "camera_bump"]


class BeamSpec(FileSchema):
    """The scenario's beam (the plan the trainee must deliver)."""

    energy_mev: float = bounded(0.0, 25.0, "electron energy (MeV)")
    applicator_diameter_mm: float = bounded(0.0, 150.0, "applicator diameter (mm)")
    bevel_deg: float = bounded(0.0, 45.0, "bevel angle (deg)", low_inclusive=True,
                               default=0.0)
    disc: Literal["none", "lead", "steel"] = "none"
    disc_depth_mm: float = bounded(0.0, 100.0, "shielding disc depth below the end face (mm)",
                                   default=30.0)
    bolus_mm: float = bounded(0.0, 30.0, "bolus thickness (mm)", low_inclusive=True,
                              default=0.0)
    prescription_gy: float = bounded(0.0, 30.0, "prescription (Gy)", default=10.0)
    isodose_percent: float = bounded(50.0, 100.0, "prescription isodose (%)", default=90.0)


class TargetSpec(FileSchema):
    """The target: a phantom structure, down to ``max_depth_mm`` below the bed surface."""

    structure: str = "CTV"
    max_depth_mm: float | None = bounded(0.0, 200.0, "target depth below the bed (mm)",
                                         default=None)


class PlanSpec(FileSchema):
    """The intended pose relative to the phantom's planned one (flat end on the bed)."""

    tilt_deg: float = bounded(-60.0, 60.0, "tilt about the applicator x axis (deg)",
                              low_inclusive=True, default=0.0)


class StartSpec(FileSchema):
    """Where the simulated applicator starts, relative to the intended plan."""

    offset_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    tilt_toward: Direction = "cranial"
    tilt_deg: float = bounded(0.0, 45.0, "start tilt (deg)", low_inclusive=True,
                              default=0.0)


class OrganSpec(FileSchema):
    """An organ to spare: maximum point dose and/or share inside the prescription."""

    dmax_gy: float | None = bounded(0.0, 100.0, "organ maximum dose (Gy)", default=None)
    v90_max_percent: float | None = bounded(0.0, 100.0, "organ share inside the "
                                            "prescription isodose (%)", low_inclusive=True,
                                            default=None)
    source: str = ""


class FaultSpec(FileSchema):
    """A fault injected ``t_s`` after the start."""

    t_s: float = bounded(0.0, 3600.0, "fault time after the start (s)", low_inclusive=True)
    kind: FaultKind
    duration_s: float = bounded(0.0, 600.0, "fault duration (s)", default=2.0)
    magnitude: float = bounded(0.0, 100.0, "fault size (mm or deg)", default=6.0)


class ScenarioFile(FileSchema):
    """``assets/scenarios/*.json``."""

    title: str
    site: str
    description: str = ""
    beam: BeamSpec
    target: TargetSpec = Field(default_factory=TargetSpec)
    plan: PlanSpec = Field(default_factory=PlanSpec)
    start: StartSpec = Field(default_factory=StartSpec)
    organs: dict[str, OrganSpec] = Field(default_factory=dict)
    limits: dict = Field(default_factory=dict)
    time_limit_s: float = bounded(0.0, 7200.0, "time limit (s)", default=300.0)
    hints: bool = True
    faults: tuple[FaultSpec, ...] = ()
    notice_within_s: float = bounded(0.0, 600.0, "time to notice a fault (s)", default=10.0)


def _rotation_about(axis: np.ndarray, angle_deg: float) -> np.ndarray:
    """(3, 3) rotation by ``angle_deg`` about ``axis``."""
    a = np.asarray(axis, float) / np.linalg.norm(axis)
    return transform_from_rotvec(np.radians(angle_deg) * a, np.zeros(3))[:3, :3]


def tilt_toward(patient_from_applicator: np.ndarray, direction_lps: np.ndarray,
                angle_deg: float) -> np.ndarray:
    """The pose with its beam axis (+z) turned ``angle_deg`` towards ``direction_lps``.

    The end-face centre stays put (the pivot is the origin of the applicator frame).
    A direction along the beam axis leaves the pose unchanged.
    """
    pose = np.array(patient_from_applicator, dtype=np.float64)
    axis = np.cross(pose[:3, 2], np.asarray(direction_lps, float))
    if np.linalg.norm(axis) < 1e-9 or angle_deg == 0.0:
        return pose
    pose[:3, :3] = _rotation_about(axis, angle_deg) @ pose[:3, :3]
    return pose


@dataclass(frozen=True)
class Scenario:
    """A loaded scenario (``name`` = file stem) with its validated fields in ``spec``."""

    name: str
    spec: ScenarioFile
    source: str

    @property
    def title(self) -> str:
        return self.spec.title

    @property
    def target_name(self) -> str:
        """Structure the score and the light judge coverage on (see :func:`scenario_case`)."""
        t = self.spec.target
        return t.structure if t.max_depth_mm is None else f"{t.structure}_{t.max_depth_mm:g}MM"

    def beam(self) -> BeamChoice:
        b = self.spec.beam
        return BeamChoice(energy_mev=b.energy_mev, applicator_diameter_mm=b.applicator_diameter_mm,
                          bevel_deg=b.bevel_deg, disc=b.disc, prescription_gy=b.prescription_gy,
                          isodose_percent=b.isodose_percent, bolus_mm=b.bolus_mm,
                          disc_depth_mm=b.disc_depth_mm)

    def limits(self, base: PlanLimits | None = None) -> PlanLimits:
        """The plan limits (shipped defaults) with the scenario's organs and overrides."""
        organs = {name: {k: v for k, v in o.model_dump().items() if v not in (None, "")}
                  for name, o in self.spec.organs.items()}
        data = {**self.spec.limits, "organs": {**self.spec.limits.get("organs", {}), **organs}}
        return (base or load_plan_limits()).with_overrides(data, what=f"scenario {self.source}")

    def plan(self, case: Case | None = None) -> np.ndarray:
        """Intended ``patient_from_applicator``: the phantom's planned pose tilted by
        ``plan.tilt_deg`` about the applicator x axis, raised by the bolus."""
        from models.patient.phantom import planned_patient_from_applicator

        pose = planned_patient_from_applicator(case)
        tilt = np.eye(4)
        tilt[:3, :3] = _rotation_about(np.array([1.0, 0.0, 0.0]), self.spec.plan.tilt_deg)
        pose = pose @ tilt
        pose[:3, 3] -= self.spec.beam.bolus_mm * pose[:3, 2]
        return pose

    def start_pose(self, case: Case | None = None) -> np.ndarray:
        """Where the trainee's applicator starts (plan, moved by ``start``)."""
        s = self.spec.start
        pose = tilt_toward(self.plan(case), np.array(ANATOMICAL_DIRECTIONS_LPS[s.tilt_toward]),
                           s.tilt_deg)
        pose[:3, 3] += np.asarray(s.offset_mm, float)
        return pose

    def summary(self) -> str:
        """One line: the site and the beam."""
        b = self.spec.beam
        extras = [f"bevel {b.bevel_deg:g} deg" if b.bevel_deg else "flat",
                  *([f"{b.disc} disc at {b.disc_depth_mm:g} mm"] if b.disc != "none" else []),
                  *([f"bolus {b.bolus_mm:g} mm"] if b.bolus_mm else [])]
        return (f"{self.name}: {self.spec.site}, {b.energy_mev:g} MeV, "
                f"{b.applicator_diameter_mm:g} mm, {', '.join(extras)}")


def _scenario_dir() -> Path:
    from assets import asset_path

    return asset_path(SCENARIO_ASSET_DIR)


def scenario_names() -> list[str]:
    """The shipped scenarios (file stems), sorted."""
    return sorted(p.stem for p in _scenario_dir().glob("*.json"))


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A shipped scenario by name, or a scenario file by path.

    Raises
    ------
    InputError
        Unknown name or missing file (one line listing the available scenarios), or a
        field out of range (naming the file and the field).
    """
    text = str(name_or_path)
    path = Path(text)
    if not (text.endswith(".json") or path.is_file()):
        path = _scenario_dir() / f"{text}.json"
    if not path.is_file():
        raise InputError(f"scenario {text!r} not found; available: "
                         f"{', '.join(scenario_names())} (or a scenario .json file)")
    data = read_json_file(path, what=f"scenario {path.name}")
    spec = check_file(ScenarioFile, data, source=f"scenario {path.name}")
    return Scenario(path.stem, spec, path.name)


def target_mask(case: Case, scenario: Scenario) -> np.ndarray:
    """Voxels of the scenario's target: the structure, down to ``max_depth_mm`` below the
    tumour-bed surface (along the phantom's bed normal, from the cavity floor)."""
    from models.patient.phantom import PHANTOM_CTV_NORMAL_LPS, planned_patient_from_applicator

    spec = scenario.spec.target
    if spec.structure not in case.structures:
        raise InputError(f"scenario {scenario.source}: field target.structure "
                         f"{spec.structure!r} is not in the case; have: "
                         f"{', '.join(case.structures)}")
    mask = case.structures[spec.structure].mask
    if spec.max_depth_mm is None:
        return mask
    k, j, i = np.nonzero(mask)
    points = case.ct.patient_from_voxel @ np.vstack([i, j, k, np.ones(i.size)])
    floor = planned_patient_from_applicator(case)[:3, 3]
    depth = (points[:3].T - floor) @ PHANTOM_CTV_NORMAL_LPS
    keep = np.zeros_like(mask)
    sel = depth <= spec.max_depth_mm
    keep[k[sel], j[sel], i[sel]] = True
    return keep


def scenario_case(case: Case, scenarios: list[Scenario]) -> Case:
    """The case with every scenario's depth-limited target added (``CTV_6MM``...), so one
    case serves all of them (the monitor switches scenario without reloading)."""
    structures = dict(case.structures)
    for scenario in scenarios:
        name = scenario.target_name
        if name in structures:
            continue
        base = case.structures[scenario.spec.target.structure]
        structures[name] = Structure(name, target_mask(case, scenario), base.color_rgb,
                                     base.roi_type)
    return replace(case, structures=structures)
