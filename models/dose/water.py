"""Calculations on a flat water phantom: depth curves, bevel metrics, model output factors.

The water frame: +z into the water, surface at ``z = 0``, x and y centred on the end face.
:func:`water_pose` rests an applicator's (bevelled) end face flat on that surface, so the
clinical axis (the face normal) is the water's +z and the beam axis is tilted from it by
the bevel angle, towards -y of the water frame (the heel side).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from models.base.validation import as_positive
from models.beams.depth_dose import DepthDoseMetrics, analyse_depth_dose
from models.beams.library import BeamLibrary, ElectronBeam, default_library
from models.dose.electron import ElectronModel, electron_model, relative_dose
from models.patient.volume import Volume

#: Lateral margin (mm) of the water phantom around the aperture.
PHANTOM_MARGIN_MM = 45.0


def water_phantom(*, half_width_mm: float = 90.0, depth_mm: float = 120.0,
                  spacing_mm: float = 1.0) -> Volume:
    """A water box (0 HU) under air (-1000 HU) whose surface is the plane ``z = 0``.

    The CT frame is the water frame: surface exactly on a voxel boundary, x and y centred
    on 0. Use with :func:`water_pose` to put an applicator's end face on that surface.
    """
    h = as_positive(spacing_mm, name="spacing_mm")
    n_xy = 2 * math.ceil(half_width_mm / h)
    n_above = max(4, math.ceil(20.0 / h))
    n_below = math.ceil(depth_mm / h)
    hu = np.full((n_above + n_below, n_xy, n_xy), -1000.0, dtype=np.float32)
    hu[n_above:] = 0.0
    origin = (-0.5 * (n_xy - 1) * h, -0.5 * (n_xy - 1) * h, -(n_above - 0.5) * h)
    return Volume.from_grid(hu, spacing_mm=(h, h, h), origin_mm=origin)


def water_pose(bevel_deg: float) -> np.ndarray:
    """``water_from_applicator`` putting a bevelled end face flat on the water surface.

    The applicator is rotated about x by the bevel so that its face normal
    ``(0, -sin b, cos b)`` becomes the water's +z; the end-face centre is at the origin.
    """
    b = math.radians(float(bevel_deg))
    rot = np.array([[1.0, 0.0, 0.0],
                    [0.0, math.cos(b), math.sin(b)],
                    [0.0, -math.sin(b), math.cos(b)]])
    pose = np.eye(4)
    pose[:3, :3] = rot
    return pose


@dataclass(frozen=True, eq=False)
class WaterDose:
    """Relative dose of a beam on the flat water phantom, as a Volume in the water frame."""

    beam: ElectronBeam
    dose: Volume          # arbitrary units, beam-aligned grid, patient frame = water frame


def water_dose(beam: ElectronBeam, *, grid_mm: float = 1.0, library: BeamLibrary | None = None,
               fast: bool = True, model: ElectronModel | None = None) -> WaterDose:
    """Dose of ``beam`` resting on the water phantom (not normalised; air not masked).

    ``model`` replaces the library's tables of ``beam`` (used by the commissioning fit).
    """
    if model is None:
        model = electron_model(beam, library)
    pose = water_pose(beam.bevel_deg)
    rise = model.applicator.radius_mm * model.applicator.slope
    ct = water_phantom(half_width_mm=model.applicator.radius_mm + rise + PHANTOM_MARGIN_MM,
                       depth_mm=1.3 * model.cut_depth_mm + 2.0 * rise + 10.0,
                       spacing_mm=min(1.0, float(grid_mm)))
    rel = relative_dose(np.asarray(ct.array, dtype=np.float32), ct.voxel_from_patient @ pose,
                        model, grid_mm=float(grid_mm), fast=fast, mask_air=False)
    return WaterDose(beam, Volume(rel.dose, pose @ rel.grid.applicator_from_voxel()))


@dataclass(frozen=True, eq=False)
class DepthCurve:
    """Depth dose along the clinical axis (normal to the water through the face centre)."""

    beam: ElectronBeam
    depth_mm: np.ndarray        # (N,) from the surface
    dose_percent: np.ndarray    # (N,) % of the curve's maximum
    metrics: DepthDoseMetrics


def depth_curve(beam: ElectronBeam, *, grid_mm: float = 1.0, step_mm: float = 0.5,
                library: BeamLibrary | None = None) -> DepthCurve:
    """Depth dose of ``beam`` on water along the normal to the surface (clinical axis).

    Examples
    --------
    >>> curve = depth_curve(ElectronBeam("liac", 6.0, 100.0), grid_mm=2.0)
    >>> abs(curve.metrics.r50_mm - 23.3) < 1.0
    True
    """
    water = water_dose(beam, grid_mm=grid_mm, library=library)
    model = electron_model(beam, library)
    depth = np.arange(0.0, 1.2 * model.cut_depth_mm, float(step_mm))
    points = np.stack([np.zeros_like(depth), np.zeros_like(depth), depth], axis=1)
    dose = water.dose.sample(points, order=1)
    dose = 100.0 * dose / dose.max()
    return DepthCurve(beam, depth, dose, analyse_depth_dose(depth, dose))


@dataclass(frozen=True)
class BevelMetrics:
    """How a bevel changes the dose on water (mm, deg).

    ``r90_clinical_mm``: R90 along the clinical axis (surface normal); ``r90_beam_axis_mm``:
    depth below the surface of the 90 % point along the beam axis; ``tilt_deg``: tilt of the
    90 % isodose against the water surface, from its depth at +-half the radius along the
    bevel direction (positive = deeper on the toe side).
    """

    bevel_deg: float
    r90_clinical_mm: float
    r90_beam_axis_mm: float
    tilt_deg: float

    @property
    def tilt_from_beam_normal_deg(self) -> float:
        """Tilt of the 90 % isodose against the plane normal to the beam axis (deg)."""
        return self.bevel_deg - self.tilt_deg


def bevel_metrics(beam: ElectronBeam, *, grid_mm: float = 1.0,
                  library: BeamLibrary | None = None) -> BevelMetrics:
    """R90 along the clinical and beam axes and the 90 % isodose tilt for ``beam`` on water."""
    water = water_dose(beam, grid_mm=grid_mm, library=library)
    model = electron_model(beam, library)
    step = 0.25
    depth = np.arange(0.0, model.cut_depth_mm, step)
    cax = water.dose.sample(np.stack([0 * depth, 0 * depth, depth], axis=1))
    norm = cax.max()
    b = math.radians(beam.bevel_deg)
    # beam axis in the water frame: applicator +z = (0, sin b, cos b)
    along = np.stack([0 * depth, np.sin(b) * depth / max(np.cos(b), 1e-9), depth], axis=1)
    beam_axis = water.dose.sample(along)

    def r90(values: np.ndarray) -> float:
        return analyse_depth_dose(depth, 100.0 * values / norm).r90_mm if values.max() >= (
            0.9 * norm) else float("nan")

    half = 0.5 * model.applicator.radius_mm
    # toe side: applicator +y maps to water (0, cos b, -sin b); on the surface: +y_water
    deep = {}
    for sign in (-1.0, 1.0):
        line = np.stack([0 * depth, np.full_like(depth, sign * half), depth], axis=1)
        deep[sign] = r90(water.dose.sample(line))
    tilt = math.degrees(math.atan2(deep[1.0] - deep[-1.0], 2.0 * half))
    return BevelMetrics(float(beam.bevel_deg), r90(cax), r90(beam_axis), tilt)


@lru_cache(maxsize=256)
def model_output_factor(beam: ElectronBeam, library: BeamLibrary | None) -> float:
    """Output factor from this model on water: CAX maximum vs the reference applicator."""
    machine = (library if library is not None else default_library()).validate(beam)
    ref = ElectronBeam(beam.machine, beam.energy_mev, machine.reference_applicator_mm, 0.0)

    def cax_max(b: ElectronBeam) -> float:
        water = water_dose(b, grid_mm=2.0, library=library)
        model = electron_model(b, library)
        depth = np.arange(0.0, model.cut_depth_mm, 0.5)
        b_rad = math.radians(b.bevel_deg)
        along = np.stack([0 * depth, np.sin(b_rad) * depth / np.cos(b_rad), depth], axis=1)
        return float(water.dose.sample(along).max())

    return cax_max(beam) / cax_max(ref)


def model_output_factor_table(machine_name: str, library: BeamLibrary | None = None
                              ) -> list[dict[str, float]]:
    """Output factors of every energy, applicator and bevel of a machine, from this model.

    Rows ``{"energy_mev", "diameter_mm", "bevel_deg", "factor"}`` in the format of the
    ``output_factors.table`` of a beam-data file (how the shipped tables were made).
    """
    lib = library if library is not None else default_library()
    machine = lib.machine(machine_name)
    rows = []
    for energy in machine.energies_mev:
        for diameter in machine.applicator_diameters_mm:
            for bevel in machine.bevels_deg:
                beam = ElectronBeam(machine.name, energy, diameter, bevel)
                rows.append({"energy_mev": energy, "diameter_mm": diameter, "bevel_deg": bevel,
                             "factor": round(model_output_factor(beam, library), 4)})
    return rows
