"""Monte Carlo in water against commissioning curves (the source model's acceptance).

The water frame of :mod:`models.dose.water` (surface ``z = 0``, clinical axis ``x = y = 0``,
bevel toe towards +y) is the "patient" frame of a Monte Carlo run on
:func:`models.dose.water.water_phantom` at :func:`models.dose.water.water_pose`, so the
Monte Carlo dose volume is sampled directly in that frame. Statistical noise is reduced
by averaging where the beam is symmetric: the depth dose over a disc of
:func:`axis_radius_mm` around the clinical axis (x only for a bevel, whose dose changes
along y), the profiles over :data:`PROFILE_BAND_MM` across them; the comparison follows
:func:`models.dose.commission.compare` (dR90, dR50, surface dose, 1-D gamma 2 %/2 mm with
a 10 % cut-off on the data's points).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from models.beams.commissioning import BeamCurves
from models.beams.depth_dose import analyse_depth_dose
from models.dose.commission import Comparison, gamma_pass_percent
from models.patient.volume import Volume

#: Radius of the disc around the clinical axis the depth dose is averaged over, as a
#: fraction of the applicator diameter (inside the flat part of the field).
AXIS_RADIUS_FRACTION = 0.15

#: Half-width (mm) of the band across a profile it is averaged over.
PROFILE_BAND_MM = 4.0

#: Depth step (mm) of the fine Monte Carlo curves.
FINE_STEP_MM = 0.5


@dataclass(frozen=True, eq=False)
class McWaterCurves:
    """Monte Carlo curves on fine axes: depth dose in % of its maximum, profiles in % of
    the clinical-axis value (normalised on the central third like the data)."""

    depth_mm: np.ndarray
    depth_dose: np.ndarray
    lateral_mm: np.ndarray
    profile_x: np.ndarray
    profile_y: np.ndarray

    def as_json(self) -> dict:
        """Compact rounded lists."""
        def r(a):
            return [round(float(v), 2) for v in a]
        return {"depth_mm": r(self.depth_mm), "depth_dose_percent": r(self.depth_dose),
                "lateral_mm": r(self.lateral_mm), "profile_x_percent": r(self.profile_x),
                "profile_y_percent": r(self.profile_y)}


def axis_radius_mm(diameter_mm: float) -> float:
    """Radius (mm) of the clinical-axis averaging disc of an applicator."""
    return AXIS_RADIUS_FRACTION * float(diameter_mm)


def _offsets(radius_mm: float, step_mm: float, *, x_only: bool) -> np.ndarray:
    g = np.arange(-radius_mm, radius_mm + 1e-9, step_mm)
    if x_only:
        return np.stack([g, 0 * g], axis=1)
    gx, gy = np.meshgrid(g, g, indexing="ij")
    keep = gx ** 2 + gy ** 2 <= radius_mm ** 2 + 1e-9
    return np.stack([gx[keep], gy[keep]], axis=1)


def mc_water_curves(dose: Volume, curves: BeamCurves, *, grid_mm: float = 2.0
                    ) -> McWaterCurves:
    """Depth dose and profiles of a Monte Carlo water dose where ``curves`` has data."""
    z = np.arange(0.5 * FINE_STEP_MM, float(curves.depth_mm[-1]) + 3.0, FINE_STEP_MM)
    off = _offsets(axis_radius_mm(curves.diameter_mm), 0.5 * grid_mm,
                   x_only=curves.bevel_deg > 0)
    pts = np.concatenate([np.stack([np.full_like(z, ox), np.full_like(z, oy), z], axis=1)
                          for ox, oy in off])
    dd = dose.sample(pts, order=1).reshape(len(off), z.size).mean(axis=0)
    dd = 100.0 * dd / dd.max()
    lateral = np.arange(-0.5 * curves.diameter_mm - 30.0, 0.5 * curves.diameter_mm + 30.0,
                        1.0)
    px = py = np.zeros(0)
    if math.isfinite(curves.profile_depth_mm):
        band = np.arange(-PROFILE_BAND_MM, PROFILE_BAND_MM + 1e-9, 0.5 * grid_mm)

        def profile(axis: int) -> np.ndarray:
            rows = []
            for b in band:
                p = np.zeros((lateral.size, 3))
                p[:, axis] = lateral
                p[:, 1 - axis] = b
                p[:, 2] = curves.profile_depth_mm
                rows.append(dose.sample(p, order=1))
            values = np.mean(rows, axis=0)
            centre = np.abs(lateral) <= curves.diameter_mm / 6.0
            return values / values[centre].mean()

        px, py = profile(0), profile(1)

    return McWaterCurves(z, dd, lateral, px, py)


def _scaled_to(data_x: np.ndarray, data: np.ndarray, x: np.ndarray, model: np.ndarray,
               diameter_mm: float) -> np.ndarray:
    centre = np.abs(data_x) <= diameter_mm / 6.0
    level = float(data[centre].mean()) if centre.any() else 100.0
    return model * level


def compare_mc(curves: BeamCurves, mc: McWaterCurves) -> Comparison:
    """Monte Carlo curves against the data (same numbers as the pencil-beam comparison)."""
    data = analyse_depth_dose(curves.depth_mm, curves.depth_dose_percent)
    mine = analyse_depth_dose(mc.depth_mm, mc.depth_dose)
    surface = float(np.interp(curves.depth_mm[0], mc.depth_mm, mc.depth_dose)
                    - curves.depth_dose_percent[0])
    g_dd = gamma_pass_percent(curves.depth_mm, curves.depth_dose_percent, mc.depth_mm,
                              mc.depth_dose)
    g_x = g_y = float("nan")
    if mc.profile_x.size and curves.x_mm.size:
        g_x = gamma_pass_percent(curves.x_mm, curves.profile_x_percent, mc.lateral_mm,
                                 _scaled_to(curves.x_mm, curves.profile_x_percent,
                                            mc.lateral_mm, mc.profile_x, curves.diameter_mm))
    if mc.profile_y.size and curves.y_mm.size:
        g_y = gamma_pass_percent(curves.y_mm, curves.profile_y_percent, mc.lateral_mm,
                                 _scaled_to(curves.y_mm, curves.profile_y_percent,
                                            mc.lateral_mm, mc.profile_y, curves.diameter_mm))
    return Comparison(curves.energy_mev, curves.diameter_mm, curves.bevel_deg,
                      d_r90_mm=mine.r90_mm - data.r90_mm, d_r50_mm=mine.r50_mm - data.r50_mm,
                      d_surface_percent=surface, gamma_depth_percent=g_dd,
                      gamma_x_percent=g_x, gamma_y_percent=g_y)
