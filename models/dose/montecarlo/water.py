"""Monte Carlo in water against commissioning curves (the source model's acceptance).

The water frame of :mod:`models.dose.water` (surface ``z = 0``, clinical axis ``x = y = 0``,
bevel toe towards +y) is the "patient" frame of a Monte Carlo run on
:func:`models.dose.water.water_phantom` at :func:`models.dose.water.water_pose`, so the
Monte Carlo dose volume is sampled directly in that frame. Statistical noise is reduced
by averaging where the beam is symmetric: the depth dose over a disc of
:func:`axis_radius_mm` around the clinical axis (x only for a bevel, whose dose changes
along y), a flat applicator's profiles over circles about the axis, a bevelled one's over
:data:`PROFILE_BAND_MM` across them (mirrored in x); the comparison follows
:func:`models.dose.commission.compare` (dR90, dR50, surface dose, 1-D gamma 2 %/2 mm with
a 10 % cut-off on the data's points). Like the data (and the pencil beam's comparison), the
Monte Carlo curves are means over the data's voxel (``BeamCurves.voxel_mm``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from models.beams.commissioning import BeamCurves
from models.beams.depth_dose import analyse_depth_dose
from models.dose.commission import Comparison, box_offsets, gamma_pass_percent
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


#: Directions (per half turn) a flat applicator's profile is averaged over.
PROFILE_ANGLES = 24


def _profile_points(lateral_mm: np.ndarray, axis: int, curves: BeamCurves,
                    grid_mm: float) -> np.ndarray:
    """(M, L, 3) points whose mean along M is the profile along ``axis`` (0 x, 1 y) at
    ``lateral_mm`` (L,), averaged over the data's voxel like the data.

    A flat applicator's beam is symmetric about the clinical axis: the profile at
    ``lateral`` is the mean over the whole circle of radius ``|lateral|``
    (``PROFILE_ANGLES`` directions per half turn), the voxel box turned with the
    direction. A
    bevelled one is symmetric in x only: the mean over a band of :data:`PROFILE_BAND_MM`
    across the profile, mirrored in x.
    """
    vx, vy, vz = curves.voxel_mm
    along = box_offsets(vx if axis == 0 else vy)
    depth = curves.profile_depth_mm + box_offsets(vz)
    if curves.bevel_deg == 0:
        angles = np.pi * np.arange(2 * PROFILE_ANGLES) / PROFILE_ANGLES
        across = box_offsets(vy if axis == 0 else vx)
        a, u, v, w = np.meshgrid(angles, along, across, depth, indexing="ij")
        a, u, v, w = (t.ravel()[:, None] for t in (a, u, v, w))
        r = np.abs(lateral_mm)[None, :] + u
        pts = np.stack([r * np.cos(a) - v * np.sin(a), r * np.sin(a) + v * np.cos(a),
                        np.broadcast_to(w, r.shape)], axis=-1)
        return pts
    band = np.arange(-PROFILE_BAND_MM, PROFILE_BAND_MM + 1e-9, 0.5 * grid_mm)
    sign = np.array([1.0, -1.0])
    s, u, v, w = np.meshgrid(sign, along, band, depth, indexing="ij")
    s, u, v, w = (t.ravel()[:, None] for t in (s, u, v, w))
    pos = lateral_mm[None, :] + u
    pts = np.zeros((s.shape[0], lateral_mm.size, 3))
    pts[..., axis] = pos * (s if axis == 0 else 1.0)
    pts[..., 1 - axis] = v * (1.0 if axis == 0 else s)
    pts[..., 2] = w
    return pts


def mc_water_raw(dose: Volume, curves: BeamCurves, *, grid_mm: float = 2.0
                 ) -> McWaterCurves:
    """Depth dose and profiles of a Monte Carlo water dose, in the dose's own units.

    Same points and averaging as :func:`mc_water_curves`, not normalised: linear in the
    dose, so the curves of a weighted sum of runs are the weighted sum of their curves
    (what the source commissioning fits).
    """
    z = np.arange(0.5 * FINE_STEP_MM, float(curves.depth_mm[-1]) + 3.0, FINE_STEP_MM)
    off = _offsets(axis_radius_mm(curves.diameter_mm), 0.5 * grid_mm,
                   x_only=curves.bevel_deg > 0)
    if curves.bevel_deg > 0:        # across the line, the data's voxel in y
        off = np.concatenate([off + np.array([0.0, oy])
                              for oy in box_offsets(curves.voxel_mm[1])])
    # averaged over the data's voxel depth; the first half Monte Carlo voxel reads the
    # surface voxel (its mean over the first grid_mm), not an interpolation into the
    # vacuum above it
    zs = np.maximum(z[:, None] + box_offsets(curves.voxel_mm[2])[None, :], 0.5 * grid_mm)
    pts = np.concatenate([np.stack([np.full(zs.size, ox), np.full(zs.size, oy),
                                    zs.ravel()], axis=1) for ox, oy in off])
    dd = dose.sample(pts, order=1).reshape(len(off), *zs.shape).mean(axis=(0, 2))
    lateral = np.arange(-0.5 * curves.diameter_mm - 30.0, 0.5 * curves.diameter_mm + 30.0,
                        1.0)
    px = py = np.zeros(0)
    if math.isfinite(curves.profile_depth_mm):
        def profile(axis: int) -> np.ndarray:
            pts = _profile_points(lateral, axis, curves, grid_mm)
            return dose.sample(pts.reshape(-1, 3), order=1).reshape(pts.shape[:2]).mean(0)

        px, py = profile(0), profile(1)
    return McWaterCurves(z, dd, lateral, px, py)


def mc_water_curves(dose: Volume, curves: BeamCurves, *, grid_mm: float = 2.0
                    ) -> McWaterCurves:
    """Depth dose (% of its maximum) and profiles (% of the central third's mean, like
    the data) of a Monte Carlo water dose where ``curves`` has data."""
    return normalised(mc_water_raw(dose, curves, grid_mm=grid_mm), curves.diameter_mm)


def normalised(raw: McWaterCurves, diameter_mm: float) -> McWaterCurves:
    """Raw curves normalised like the data (depth dose to its maximum, profiles to the
    mean of their central third)."""
    centre = np.abs(raw.lateral_mm) <= diameter_mm / 6.0

    def prof(values: np.ndarray) -> np.ndarray:
        return 100.0 * values / values[centre].mean() if values.size else values

    return McWaterCurves(raw.depth_mm, 100.0 * raw.depth_dose / raw.depth_dose.max(),
                         raw.lateral_mm, prof(raw.profile_x), prof(raw.profile_y))


def _scaled_to(data_x: np.ndarray, data: np.ndarray, model: np.ndarray,
               diameter_mm: float) -> np.ndarray:
    """A model profile (% of its central third's mean) on the data's central level."""
    centre = np.abs(data_x) <= diameter_mm / 6.0
    level = float(data[centre].mean()) if centre.any() else 100.0
    return model * level / 100.0


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
                                            mc.profile_x, curves.diameter_mm))
    if mc.profile_y.size and curves.y_mm.size:
        g_y = gamma_pass_percent(curves.y_mm, curves.profile_y_percent, mc.lateral_mm,
                                 _scaled_to(curves.y_mm, curves.profile_y_percent,
                                            mc.profile_y, curves.diameter_mm))
    return Comparison(curves.energy_mev, curves.diameter_mm, curves.bevel_deg,
                      d_r90_mm=mine.r90_mm - data.r90_mm, d_r50_mm=mine.r50_mm - data.r50_mm,
                      d_surface_percent=surface, gamma_depth_percent=g_dd,
                      gamma_x_percent=g_x, gamma_y_percent=g_y)
