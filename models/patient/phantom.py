"""Built-in phantom: a deterministic abdominal patient after pancreatic tumour resection.

The patient lies supine, head first. Patient LPS: +x patient left, +y posterior,
+z superior (mm). The body is an elliptical cylinder (about 300 x 210 mm) whose outline is
perturbed by small seeded harmonics; inside are subcutaneous fat, the abdominal muscle wall,
visceral fat, psoas and paraspinal muscles, aorta and IVC, the lumbar spine (cortical shell,
cancellous core, discs, canal, posterior arch), iliac wings, liver, kidneys, stomach (with an
anterior gas cap), small-bowel loops (wall, fluid, gas), and the pancreas. A surgical cavity
(air) opens **anteriorly** through the skin above the pancreatic body; its flat floor rests
on the tumour bed (CTV). Five skin fiducials (ceramic beads, visible in the CT) surround the
opening.

HU values follow typical non-contrast CT (air -1000, fat -100/-90, soft tissue 20..60, bone
cancellous 450 / cortical 1100); the image is blurred slightly (partial volume) and gets
Gaussian noise (sigma 10 HU), then rounded to integers so it survives DICOM storage
(RescaleSlope 1, RescaleIntercept -1024) exactly.

The geometry of the cavity, CTV and planned applicator pose does not depend on the seed
(the seed moves bowel loops, the outline harmonics and the noise), so
:func:`planned_patient_from_applicator` is exact for every seed and grid.

Structures (ROIName -> RTROIInterpretedType): BODY (EXTERNAL), CAVITY (CAVITY), CTV (CTV),
PANCREAS, LIVER, KIDNEY_L, KIDNEY_R, STOMACH, BOWEL, SPINE, PELVIS (ORGAN).
Fiducials: FID1..FID5 (POINT ROIs on the anterior skin).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from models.base.errors import InputError
from models.base.validation import as_array
from models.patient.case import Case, Structure
from models.patient.volume import Volume

log = logging.getLogger(__name__)

#: Default CT grid (column, row, slice) spacing in mm.
DEFAULT_SPACING_MM: tuple[float, float, float] = (1.5, 1.5, 2.5)
#: Field of view: voxel centres span [-FOV/2, +FOV/2] along x, y, z (mm).
FOV_MM: tuple[float, float, float] = (360.0, 270.0, 220.0)

#: Cavity axis (x, z) in LPS mm; the cavity runs along y from the skin to its floor.
CAVITY_AXIS_XZ_MM: tuple[float, float] = (25.0, 5.0)
#: y (LPS mm) of the flat cavity floor = anterior surface of the tumour bed.
CAVITY_FLOOR_Y_MM: float = -12.0
#: Cavity semi-axes (x, z) at the floor and at the skin (mm); it widens towards the skin.
CAVITY_SEMI_FLOOR_MM: tuple[float, float] = (42.0, 38.0)
CAVITY_SEMI_SKIN_MM: tuple[float, float] = (50.0, 46.0)
#: Radius (mm) of the rounded edge between cavity floor and wall.
CAVITY_FILLET_MM: float = 8.0
#: Tumour bed: half-ellipsoid under the floor, semi-axes (x, y depth, z) mm.
CTV_SEMI_MM: tuple[float, float, float] = (28.0, 14.0, 26.0)
#: Unit normal of the tumour-bed surface (LPS), pointing into tissue (posterior).
PHANTOM_CTV_NORMAL_LPS: np.ndarray = np.array([0.0, 1.0, 0.0])

STRUCTURE_NAMES: tuple[str, ...] = ("BODY", "CAVITY", "CTV", "PANCREAS", "LIVER", "KIDNEY_L",
                                    "KIDNEY_R", "STOMACH", "BOWEL", "SPINE", "PELVIS")
FIDUCIAL_NAMES: tuple[str, ...] = ("FID1", "FID2", "FID3", "FID4", "FID5")
#: PatientID of the phantom: how other code recognises it after a DICOM round trip.
PHANTOM_PATIENT_ID = "IORT-PHANTOM"

_ROI: dict[str, tuple[tuple[int, int, int], str]] = {
    "BODY": ((222, 184, 135), "EXTERNAL"),
    "CAVITY": ((0, 200, 255), "CAVITY"),
    "CTV": ((255, 0, 0), "CTV"),
    "PANCREAS": ((255, 200, 80), "ORGAN"),
    "LIVER": ((150, 60, 40), "ORGAN"),
    "KIDNEY_L": ((180, 90, 160), "ORGAN"),
    "KIDNEY_R": ((160, 80, 200), "ORGAN"),
    "STOMACH": ((240, 150, 150), "ORGAN"),
    "BOWEL": ((230, 190, 110), "ORGAN"),
    "SPINE": ((245, 245, 220), "ORGAN"),
    "PELVIS": ((235, 235, 200), "ORGAN"),
}

# HU of each tissue (integers, before blur and noise).
_HU = {"air": -1000, "fat": -100, "visceral_fat": -90, "muscle": 50, "vessel": 40,
       "liver": 55, "kidney": 30, "stomach_wall": 40, "fluid": 15, "pancreas": 40, "ctv": 45,
       "bowel_wall": 40, "cancellous": 450, "cortical": 1100, "disc": 80, "csf": 10,
       "pelvis": 700, "bead": 1200}
_NOISE_HU = 10.0
_BLUR_MM = 0.8


@dataclass(frozen=True)
class _Grid:
    """Voxel-centre coordinates as broadcastable (1,1,ni), (1,nj,1), (nk,1,1) arrays."""

    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    volume: Volume


def _grid(spacing_mm: np.ndarray) -> _Grid:
    n = [round(float(fov / s)) + 1 for fov, s in zip(FOV_MM, spacing_mm, strict=True)]
    origin = -0.5 * (np.array(n) - 1) * spacing_mm
    axes = [origin[a] + np.arange(n[a]) * spacing_mm[a] for a in range(3)]
    volume = Volume.from_grid(np.zeros((n[2], n[1], n[0]), dtype=np.float32),
                              spacing_mm=tuple(spacing_mm), origin_mm=tuple(origin))
    return _Grid(axes[0][None, None, :], axes[1][None, :, None], axes[2][:, None, None], volume)


def _ellipsoid(g: _Grid, centre: tuple[float, float, float],
               semi: tuple[float, float, float], angle_deg: float = 0.0) -> np.ndarray:
    """Inside test of an ellipsoid, optionally rotated about z by ``angle_deg``."""
    dx, dy, dz = g.x - centre[0], g.y - centre[1], g.z - centre[2]
    if angle_deg:
        c, s = np.cos(np.radians(angle_deg)), np.sin(np.radians(angle_deg))
        dx, dy = c * dx + s * dy, -s * dx + c * dy
    return (dx / semi[0]) ** 2 + (dy / semi[1]) ** 2 + (dz / semi[2]) ** 2 <= 1.0


def _cylinder_z(g: _Grid, centre_xy: tuple[float, float], semi_xy: tuple[float, float]
                ) -> np.ndarray:
    """Inside test of an elliptic cylinder along z (broadcast over z)."""
    inside = ((g.x - centre_xy[0]) / semi_xy[0]) ** 2 + ((g.y - centre_xy[1]) / semi_xy[1]) ** 2
    return np.broadcast_to(inside <= 1.0, (g.z.shape[0], g.y.shape[1], g.x.shape[2]))


@dataclass(frozen=True)
class _Outline:
    """Body outline: ellipse with semi-axes a(z), b(z) and small seeded harmonics."""

    harmonics: np.ndarray  # (n, 3): order, amplitude, phase

    def semi(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return 150.0 - 0.0008 * z ** 2, 105.0 - 0.0005 * z ** 2

    def level(self, x: np.ndarray, y: np.ndarray, z: np.ndarray, shrink_mm: float = 0.0
              ) -> np.ndarray:
        """<= 1 inside the outline shrunk by ``shrink_mm`` (approximately, normal to it).

        The harmonics modulate the radius by the polar angle about the z axis, so they are
        evaluated on the (y, x) plane only and broadcast over z (cheap on big grids).
        """
        a, b = self.semi(z)
        a, b = a - shrink_mm, b - shrink_mm
        theta = np.arctan2(y, x)
        radius = np.ones_like(theta)
        for order, amp, phase in self.harmonics:
            radius = radius + amp * np.cos(order * theta + phase)
        y_back = 95.0 - shrink_mm  # the back is flattened on the table
        level = np.sqrt((x / a) ** 2 + (y / b) ** 2) / radius
        return np.where(y > y_back, np.maximum(level, 1.0 + (y - y_back)), level)

    def skin_y(self, x: float, z: float) -> float:
        """Anterior skin y (LPS mm) at (x, z), by bisection on the outline level."""
        lo, hi = -200.0, 0.0  # lo outside, hi inside
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            inside = self.level(np.array(x), np.array(mid), np.array(z)) <= 1.0
            lo, hi = (lo, mid) if inside else (mid, hi)
        return 0.5 * (lo + hi)


def _cavity(g: _Grid) -> np.ndarray:
    """Open surgical cavity: from outside the skin down to its flat, round-edged floor."""
    cx, cz = CAVITY_AXIS_XZ_MM
    y_floor = CAVITY_FLOOR_Y_MM
    # taper: semi-axes grow linearly from the floor to y = -105 (skin level)
    t = np.clip((y_floor - g.y) / (y_floor + 105.0), 0.0, 1.0)
    sx = CAVITY_SEMI_FLOOR_MM[0] + t * (CAVITY_SEMI_SKIN_MM[0] - CAVITY_SEMI_FLOOR_MM[0])
    sz = CAVITY_SEMI_FLOOR_MM[1] + t * (CAVITY_SEMI_SKIN_MM[1] - CAVITY_SEMI_FLOOR_MM[1])
    rho = np.sqrt(((g.x - cx) / sx) ** 2 + ((g.z - cz) / sz) ** 2)  # 1 on the wall
    mean_semi = 0.5 * (sx + sz)
    f = CAVITY_FILLET_MM
    radial_mm = (rho - 1.0) * mean_semi + f  # > 0 inside the fillet band
    above = np.maximum(g.y - (y_floor - f), 0.0)
    in_fillet = (np.maximum(radial_mm, 0.0) ** 2 + above ** 2) <= f ** 2
    return (rho <= 1.0) & (g.y <= y_floor) & in_fillet


def _tube(g: _Grid, path: np.ndarray, radius_mm: np.ndarray | float) -> np.ndarray:
    """Distance-to-polyline test: voxels within ``radius_mm`` of a densely sampled path.

    ``radius_mm`` may vary along the path (one value per path point).
    """
    shape = (g.z.shape[0], g.y.shape[1], g.x.shape[2])
    radii = np.broadcast_to(np.asarray(radius_mm, dtype=np.float64), path.shape[:1])
    r_max = float(radii.max())
    lo, hi = path.min(axis=0) - r_max, path.max(axis=0) + r_max
    sel = [np.flatnonzero((ax.ravel() >= lo[a]) & (ax.ravel() <= hi[a]))
           for a, ax in enumerate((g.x, g.y, g.z))]
    out = np.zeros(shape, dtype=bool)
    if any(s.size == 0 for s in sel):
        return out
    zz, yy, xx = np.meshgrid(g.z.ravel()[sel[2]], g.y.ravel()[sel[1]], g.x.ravel()[sel[0]],
                             indexing="ij")
    pts = np.stack([xx.ravel(), yy.ravel(), zz.ravel()], axis=1)
    dist, idx = cKDTree(path).query(pts, distance_upper_bound=r_max + 1e-6)
    hit = np.isfinite(dist)
    inside = np.zeros(pts.shape[0], dtype=bool)
    inside[hit] = dist[hit] <= radii[idx[hit]]
    ks, js, is_ = sel[2], sel[1], sel[0]
    out[np.ix_(ks, js, is_)] = inside.reshape(ks.size, js.size, is_.size)
    return out


def _resample_path(knots: np.ndarray, step_mm: float = 0.5) -> np.ndarray:
    """Dense points along a polyline through ``knots`` (N, 3), smoothed by a cubic spline."""
    from scipy.interpolate import CubicSpline

    seg = np.linalg.norm(np.diff(knots, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    spline = CubicSpline(s, knots, axis=0)
    return spline(np.arange(0.0, s[-1] + step_mm, step_mm))


def _bowel_path(rng: np.random.Generator) -> np.ndarray:
    """Serpentine small-bowel loop in the lower abdomen, away from the cavity."""
    knots = []
    rows = [(-52.0, -40.0), (-76.0, -22.0), (-98.0, -38.0)]  # (z, y) per row
    for r, (z_row, y_row) in enumerate(rows):
        xs = np.linspace(-85.0, 85.0, 7)
        if r % 2:
            xs = xs[::-1]
        for n, x in enumerate(xs):
            jitter = rng.uniform(-4.0, 4.0, size=3)
            wiggle = 8.0 * np.sin(n * 1.3 + rng.uniform(0, 2 * np.pi))
            knots.append([x + jitter[0], y_row + wiggle + jitter[1], z_row + jitter[2]])
    return _resample_path(np.asarray(knots))


def _pancreas_path() -> tuple[np.ndarray, np.ndarray]:
    """Pancreas centre line (head -> tail) and radius along it (mm)."""
    knots = np.array([[-32.0, 14.0, -12.0], [-10.0, 6.0, -4.0], [12.0, 2.0, 2.0],
                      [30.0, 0.0, 6.0], [55.0, 6.0, 14.0], [82.0, 20.0, 26.0]])
    path = _resample_path(knots)
    frac = np.linspace(0.0, 1.0, path.shape[0])
    radius = 15.0 - 6.0 * frac  # thick head, thin tail
    return path, radius


def _fiducials(outline: _Outline, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Five skin points around the cavity opening (angles and radii jittered by the seed)."""
    cx, cz = CAVITY_AXIS_XZ_MM
    out = {}
    for n, name in enumerate(FIDUCIAL_NAMES):
        angle = np.radians(18.0 + 72.0 * n + rng.uniform(-8.0, 8.0))
        radius = 78.0 + rng.uniform(-6.0, 6.0)
        x, z = cx + radius * np.cos(angle), cz + radius * np.sin(angle)
        out[name] = np.array([x, outline.skin_y(x, z), z])
    return out


def _body_wall(g: _Grid, outline: _Outline) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """HU of air, subcutaneous fat, abdominal wall muscle and visceral fat; the body and
    peritoneum masks."""
    shape = g.volume.shape
    body = np.broadcast_to(outline.level(g.x, g.y, g.z) <= 1.0, shape)
    inner_wall = np.broadcast_to(outline.level(g.x, g.y, g.z, shrink_mm=18.0) <= 1.0, shape)
    peritoneum = np.broadcast_to(outline.level(g.x, g.y, g.z, shrink_mm=28.0) <= 1.0, shape)
    hu = np.full(shape, _HU["air"], dtype=np.float32)
    hu[body] = _HU["fat"]
    hu[inner_wall] = _HU["muscle"]
    hu[peritoneum] = _HU["visceral_fat"]
    return hu, body, peritoneum


def _paint_muscles_and_vessels(g: _Grid, hu: np.ndarray, body: np.ndarray,
                               peritoneum: np.ndarray) -> None:
    """Psoas and back muscles, aorta and IVC (tissue only, not structures)."""
    psoas_scale = 1.0 + np.clip(-g.z / 200.0, 0.0, 0.5)
    for side in (-1.0, 1.0):
        psoas = ((g.x - side * 38.0) / (13.0 * psoas_scale)) ** 2 \
            + ((g.y - 52.0) / (13.0 * psoas_scale)) ** 2 <= 1.0
        hu[psoas & peritoneum] = _HU["muscle"]
        hu[_cylinder_z(g, (side * 32.0, 84.0), (22.0, 13.0)) & body] = _HU["muscle"]
    hu[_cylinder_z(g, (14.0, 30.0), (11.0, 11.0))] = _HU["vessel"]  # aorta
    hu[_cylinder_z(g, (-22.0, 30.0), (11.0, 9.0))] = _HU["vessel"]  # IVC


def _paint_upper_organs(g: _Grid, hu: np.ndarray, masks: dict[str, np.ndarray],
                        organ_room: np.ndarray) -> None:
    """Liver, kidneys and stomach (with fluid and a gas cap); later organs win overlaps."""
    liver = _ellipsoid(g, (-72.0, -8.0, 78.0), (68.0, 62.0, 62.0), angle_deg=-10.0) & organ_room
    hu[liver] = _HU["liver"]
    masks["LIVER"] = liver

    for name, side, z_c in (("KIDNEY_L", 1.0, 12.0), ("KIDNEY_R", -1.0, 0.0)):
        kidney = _ellipsoid(g, (side * 74.0, 46.0, z_c), (21.0, 16.0, 52.0),
                            angle_deg=side * 28.0) & organ_room
        hu[kidney] = _HU["kidney"]
        masks[name] = kidney
    masks["LIVER"] &= ~(masks["KIDNEY_L"] | masks["KIDNEY_R"])

    stomach = _ellipsoid(g, (68.0, -36.0, 78.0), (40.0, 27.0, 42.0), angle_deg=15.0) & organ_room
    lumen = _ellipsoid(g, (68.0, -36.0, 78.0), (35.0, 22.0, 37.0), angle_deg=15.0)
    hu[stomach] = _HU["stomach_wall"]
    hu[stomach & lumen] = _HU["fluid"]
    hu[stomach & lumen & (g.y < -46.0)] = _HU["air"]  # gas cap, anterior when supine
    masks["STOMACH"] = stomach
    for name in ("LIVER", "KIDNEY_L", "KIDNEY_R"):
        masks[name] &= ~stomach


def _paint_pancreas_and_ctv(g: _Grid, hu: np.ndarray, masks: dict[str, np.ndarray],
                            organ_room: np.ndarray) -> None:
    """Pancreas and the CTV on the cavity floor (the CTV wins their overlap)."""
    pancreas_path, pancreas_r = _pancreas_path()
    pancreas = _tube(g, pancreas_path, pancreas_r) & organ_room
    hu[pancreas] = _HU["pancreas"]

    cx, cz = CAVITY_AXIS_XZ_MM
    ctv = _ellipsoid(g, (cx, CAVITY_FLOOR_Y_MM, cz), CTV_SEMI_MM) & (g.y >= CAVITY_FLOOR_Y_MM) \
        & organ_room
    hu[ctv] = _HU["ctv"]
    masks["CTV"] = ctv
    masks["PANCREAS"] = pancreas & ~ctv


def _paint_bowel(g: _Grid, hu: np.ndarray, masks: dict[str, np.ndarray],
                 organ_room: np.ndarray, rng: np.random.Generator) -> None:
    """Seeded bowel loops with fluid and gas pockets, clear of the CTV and pancreas."""
    bowel_path = _bowel_path(rng)
    taken = masks["CTV"] | masks["PANCREAS"]
    bowel = _tube(g, bowel_path, 12.0) & organ_room & ~taken
    bowel_lumen = _tube(g, bowel_path, 9.0)
    hu[bowel] = _HU["bowel_wall"]
    hu[bowel & bowel_lumen] = _HU["fluid"]
    gas_centres = bowel_path[rng.choice(bowel_path.shape[0], size=6, replace=False)]
    gas = np.zeros(g.volume.shape, dtype=bool)
    for centre in gas_centres:
        gas |= _ellipsoid(g, tuple(centre - [0.0, 4.0, 0.0]), (7.0, 5.0, 7.0))
    hu[bowel & bowel_lumen & gas] = _HU["air"]
    masks["BOWEL"] = bowel
    for name in ("LIVER", "KIDNEY_L", "KIDNEY_R", "STOMACH"):
        masks[name] &= ~bowel


def _paint_spine(g: _Grid, hu: np.ndarray, masks: dict[str, np.ndarray],
                 body: np.ndarray) -> None:
    """Lumbar spine: vertebral bodies (cortical shell, cancellous core), discs, arches."""
    shape = g.volume.shape
    period, disc = 32.0, 7.0
    phase = np.mod(g.z + 16.0, period)
    is_disc = phase < disc
    vert_outer = _cylinder_z(g, (0.0, 56.0), (22.0, 17.0))
    vert_inner = _cylinder_z(g, (0.0, 56.0), (19.5, 14.5))
    spine = vert_outer & ~is_disc
    hu[vert_outer & is_disc] = _HU["disc"]
    hu[spine] = _HU["cortical"]
    hu[spine & vert_inner] = _HU["cancellous"]
    canal = _cylinder_z(g, (0.0, 83.0), (9.0, 8.0))
    arch = _cylinder_z(g, (0.0, 83.0), (15.0, 14.0)) & ~canal & (g.y > 74.0)
    spinous = np.broadcast_to((np.abs(g.x) <= 3.5) & (g.y > 90.0) & (g.y < 101.0), shape)
    transverse = np.broadcast_to((np.abs(g.x) >= 12.0) & (np.abs(g.x) <= 38.0)
                                 & (np.abs(g.y - 76.0) <= 3.5), shape)
    posterior = (arch | spinous | transverse) & ~is_disc & body
    hu[posterior] = _HU["cortical"]
    hu[canal] = _HU["csf"]
    masks["SPINE"] = spine | posterior


def _paint_pelvis(g: _Grid, hu: np.ndarray, masks: dict[str, np.ndarray],
                  peritoneum: np.ndarray) -> None:
    """Iliac wings: shells of ellipsoids low and lateral, posterior half only."""
    pelvis = np.zeros(g.volume.shape, dtype=bool)
    for side in (-1.0, 1.0):
        outer = _ellipsoid(g, (side * 92.0, 52.0, -150.0), (52.0, 38.0, 80.0))
        inner = _ellipsoid(g, (side * 92.0, 52.0, -150.0), (45.0, 31.0, 73.0))
        pelvis |= outer & ~inner & (g.y > 22.0) & peritoneum
    hu[pelvis] = _HU["pelvis"]
    masks["PELVIS"] = pelvis
    for name in ("BOWEL", "KIDNEY_L", "KIDNEY_R"):
        masks[name] &= ~pelvis


def _blur_noise_and_round(hu: np.ndarray, spacing: np.ndarray,
                          rng: np.random.Generator) -> np.ndarray:
    """Scanner look: Gaussian blur, seeded noise, integer HU within the CT range."""
    sigma_vox = _BLUR_MM / spacing[::-1]
    hu = ndimage.gaussian_filter(hu, sigma=sigma_vox, mode="nearest")
    hu += rng.normal(0.0, _NOISE_HU, size=hu.shape).astype(np.float32)
    return np.clip(np.rint(hu), -1024.0, 3071.0).astype(np.float32)


def make_phantom(*, spacing_mm: tuple[float, float, float] = DEFAULT_SPACING_MM,
                 seed: int = 0) -> Case:
    """Build the phantom in memory (deterministic for a given seed and grid).

    Parameters
    ----------
    spacing_mm : tuple of float
        Voxel size (column x, row y, slice z) in mm; e.g. ``(3, 3, 4)`` for fast tests.
    seed : int
        Seed of the ``numpy.random.Generator`` that places bowel loops, perturbs the
        body outline and fiducials, and draws the CT noise.

    Returns
    -------
    Case
        float32 integer-valued HU CT on an axial grid (identity direction), the eleven
        structures and five fiducials; UIDs are left empty (the DICOM writer creates them).

    Examples
    --------
    >>> case = make_phantom(spacing_mm=(4.0, 4.0, 5.0))
    >>> sorted(case.fiducials_lps)
    ['FID1', 'FID2', 'FID3', 'FID4', 'FID5']
    """
    spacing = as_array(spacing_mm, name="spacing_mm", shape=(3,))
    if np.any(spacing <= 0.2) or np.any(spacing > 10.0):
        raise InputError(f"spacing_mm must be within (0.2, 10] mm, got {spacing}")
    rng = np.random.default_rng(seed)
    g = _grid(spacing)
    outline = _Outline(np.column_stack([np.arange(2, 6), rng.uniform(0.0, 0.012, 4),
                                        rng.uniform(0, 2 * np.pi, 4)]))
    hu, body, peritoneum = _body_wall(g, outline)
    cavity_shape = _cavity(g)
    _paint_muscles_and_vessels(g, hu, body, peritoneum)

    masks: dict[str, np.ndarray] = {}
    organ_room = peritoneum & ~cavity_shape
    _paint_upper_organs(g, hu, masks, organ_room)
    _paint_pancreas_and_ctv(g, hu, masks, organ_room)
    _paint_bowel(g, hu, masks, organ_room, rng)
    _paint_spine(g, hu, masks, body)
    _paint_pelvis(g, hu, masks, peritoneum)

    # the open cavity: air wherever it cuts the body
    hu[cavity_shape] = _HU["air"]
    masks["CAVITY"] = cavity_shape & body
    masks["BODY"] = body & ~cavity_shape

    fiducials = _fiducials(outline, rng)
    bead_r = 3.0
    for point in fiducials.values():
        hu[_ellipsoid(g, tuple(point), (bead_r, bead_r, bead_r))] = _HU["bead"]
    hu = _blur_noise_and_round(hu, spacing, rng)

    structures = {name: Structure(name, np.ascontiguousarray(masks[name]), _ROI[name][0],
                                  _ROI[name][1]) for name in STRUCTURE_NAMES}
    log.debug("phantom grid %s spacing %s", g.volume.shape, spacing)
    return Case(ct=g.volume.with_array(hu), structures=structures, fiducials_lps=fiducials,
                patient_id=PHANTOM_PATIENT_ID, patient_name="Phantom^Abdomen", modality="CT")


def planned_patient_from_applicator(case: Case | None = None) -> np.ndarray:
    """Planned applicator pose: end face centred on the cavity floor, +z into the tumour bed.

    The applicator frame has its origin at the centre of the distal end face, +z along the
    beam into tissue (= :data:`PHANTOM_CTV_NORMAL_LPS`, posterior), +x = patient left.

    Parameters
    ----------
    case : Case, optional
        The phantom case. Its geometry does not depend on seed or grid; when given, it is
        only checked to be a phantom (has a CTV).

    Returns
    -------
    numpy.ndarray
        4x4 rigid ``patient_from_applicator`` (LPS mm).
    """
    if case is not None:
        case.structure("CTV")
    z_axis = PHANTOM_CTV_NORMAL_LPS / np.linalg.norm(PHANTOM_CTV_NORMAL_LPS)
    x_axis = np.array([1.0, 0.0, 0.0])
    y_axis = np.cross(z_axis, x_axis)
    out = np.eye(4)
    out[:3, 0], out[:3, 1], out[:3, 2] = x_axis, y_axis, z_axis
    out[:3, 3] = [CAVITY_AXIS_XZ_MM[0], CAVITY_FLOOR_Y_MM, CAVITY_AXIS_XZ_MM[1]]
    return out
