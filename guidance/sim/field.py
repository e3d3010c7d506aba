"""A surgical field that looks like surgery, rendered fast with known truth.

The open abdomen under OR lights, for the simulated camera: a draped patient with an
iodine-prepped skin window, a laparotomy opening whose resection cavity shows a bed of
tissue (bowel loops, fat, fibrin, blood) with wet specular highlights, metal retractor
blades on the wound edges, a retractor post holding the reference plate, the tracked tools
(marker plates, applicator tube, pointer shaft) and gloved hands that move over the field
and hide markers. Lighting is uneven: the pool of the surgical lamp, a gradient across the
image, vignetting and flicker; then sensor noise and (optionally) motion blur.

It is a 2.5-D compositor (OpenCV, no 3-D renderer), so a 1280x720 frame takes ~10-20 ms on
two CPU cores instead of the ~200 ms of :class:`~guidance.sim.camera.SimulatedCamera`:

* **The field surfaces are ray cast** from the camera, on a grid of 16x16-pixel blocks, against
  analytic surfaces in patient LPS: the body as an elliptic cylinder along the patient's
  z axis (draped beyond the skin window), the opening as an ellipsoidal bowl below the
  skin. The rays are those of the *distorted* pixels (``cv2.undistortPoints`` of the
  camera model), so lens distortion is in the geometry itself; the grid's texture
  coordinates are interpolated to full resolution and the procedural textures (drawn once
  from the seed) are sampled with ``cv2.remap``. Diffuse shading is baked into the
  textures (the lamp is fixed over the patient); the specular lobe is evaluated per frame
  from the true view direction and the surface normal, times a per-texel wetness map, so
  the highlights move as the camera moves.
* **Marker plates are sampled exactly**: for every pixel of a plate's image region, its
  undistorted ray is mapped through the plane homography of the plate (from
  ``camera_from_tool``) to the plate texture, taken from a mip level of about one texel
  per pixel. One interpolation, no approximation: the ground truth is the pose used.
* **Tool bodies, blades and hands** are polygons of projected (distorted) 3-D points with
  procedural shading, drawn far to near. A label image records which object owns each
  pixel, so the truth lists every marker that something in front of it covers.

Everything random comes from the ``np.random.Generator`` given (textures, flicker, noise), so
a run with the same seed gives the same images.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from guidance.sim.camera import (
    SimEffects,
    SimTruth,
    SimulatedImage,
    hidden_markers,
    motion_kernel,
    plate_texture,
)
from guidance.tracking.tools import ToolDefinition, check_tool_set
from models.base.errors import InputError
from models.base.transforms import invert_rigid
from models.base.validation import as_array, as_transform

log = logging.getLogger(__name__)

#: The field kinds the simulated camera offers: the pyvista rendering of the anatomy
#: meshes ("plain") or this compositor ("realistic").
FIELD_KINDS: tuple[str, ...] = ("plain", "realistic")

_BLOCK_PX = 16         # ray-casting grid step (px)
_SKIN_TEXEL_MM = 0.7   # resolution of the skin / drape texture
_BOWL_TEXELS = 720     # side of the cavity texture (azimuthal map of the bowl)
_BOWL_RADIUS_RAD = 1.75  # azimuthal map extent (the rim is at pi/2)
_PLATE_TEXELS_PER_MM = 12.0
_MIP_LEVELS = 5
_GLOVE_BGR = (150, 182, 200)
_CUFF_BGR = (150, 110, 60)
_LABEL_FIELD = 0


@dataclass(frozen=True)
class FieldLayout:
    """Where the patient and the opening are, in patient LPS mm (patient supine).

    Attributes
    ----------
    body_centre_mm : (3,) array
        Centre of the body's elliptic cross-section (its axis is along patient z).
    body_semi_axes_mm : (float, float)
        Semi-axes of the cross-section along x (left-right) and y (anterior-posterior).
    opening_centre_mm : (3,) array
        Centre of the opening at skin level (the camera looks here).
    opening_semi_axes_mm : (float, float)
        Half width (x) and half length (z) of the opening.
    cavity_depth_mm : float
        Depth of the bowl below the opening centre (posterior, +y).
    """

    body_centre_mm: np.ndarray = field(default_factory=lambda: np.array([1.5, -4.5, 0.0]))
    body_semi_axes_mm: tuple[float, float] = (148.5, 97.5)
    opening_centre_mm: np.ndarray = field(
        default_factory=lambda: np.array([24.0, -100.0, 6.0]))
    opening_semi_axes_mm: tuple[float, float] = (65.0, 95.0)
    cavity_depth_mm: float = 80.0

    @classmethod
    def for_case(cls, case, opening_centre_mm: np.ndarray) -> FieldLayout:
        """The layout of a case with ``BODY`` and ``CAVITY`` structures."""
        def extent(name: str) -> tuple[np.ndarray, np.ndarray]:
            kji = np.argwhere(case.structure(name).mask)
            pts = case.ct.voxel_to_patient(kji[:, ::-1].astype(np.float64))
            return pts.min(axis=0), pts.max(axis=0)

        body_lo, body_hi = extent("BODY")
        cav_lo, cav_hi = extent("CAVITY")
        centre = as_array(opening_centre_mm, name="opening_centre_mm", shape=(3,))
        half = 0.5 * (cav_hi - cav_lo)
        return cls(body_centre_mm=0.5 * (body_lo + body_hi),
                   body_semi_axes_mm=(float(0.5 * (body_hi - body_lo)[0]),
                                      float(0.5 * (body_hi - body_lo)[1])),
                   opening_centre_mm=centre,
                   opening_semi_axes_mm=(float(max(half[0] * 1.3, 50.0)),
                                         float(max(half[2] * 1.8, 80.0))),
                   cavity_depth_mm=float(np.clip(cav_hi[1] - centre[1], 30.0, 110.0)))


@dataclass(frozen=True)
class FieldOptions:
    """What the realistic field shows, beyond :class:`~guidance.sim.camera.SimEffects`.

    Attributes
    ----------
    lamp_pool : float
        Extra light at the centre of the surgical lamp's pool (0 = even light).
    lamp_pool_radius_mm : float
        Standard deviation of the pool.
    light_gradient : float
        Relative brightness change across the image width (one side brighter).
    specular : float
        Strength of the wet highlights (0 = matte tissue).
    """

    lamp_pool: float = 0.45
    lamp_pool_radius_mm: float = 140.0
    light_gradient: float = 0.25
    specular: float = 1.0


@dataclass(frozen=True)
class HandPose:
    """A gloved hand in the scene.

    Attributes
    ----------
    patient_from_hand : (4, 4) array
        Hand frame: origin at the palm centre, +y toward the finger tips, +z out of the back
        of the hand (toward the camera when the palm faces the patient).
    spread : float
        Finger spread (0 = closed, 1 = open hand).
    """

    patient_from_hand: np.ndarray
    spread: float = 0.5


# -- procedural textures ------------------------------------------------------------------
def _noise(rng: np.random.Generator, shape: tuple[int, int], cells: float,
           octaves: int = 4, persistence: float = 0.5) -> np.ndarray:
    """Fractal value noise in [0, 1], (H, W) float32; ``cells`` = coarsest cells across W."""
    height, width = shape
    out = np.zeros(shape, np.float32)
    amp, total = 1.0, 0.0
    for k in range(octaves):
        n = cells * 2 ** k
        grid = rng.random((max(2, int(n * height / width) + 2), max(2, int(n) + 2)),
                          dtype=np.float32)
        out += amp * cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
        total += amp
        amp *= persistence
    out /= total
    lo, hi = np.percentile(out[::7, ::7], [1, 99])
    return np.clip((out - lo) / max(hi - lo, 1e-6), 0.0, 1.0)


def _mix(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Per-pixel blend of two colours or images (t in [0, 1], (H, W))."""
    return a * (1.0 - t[..., None]) + b * t[..., None]


def _smoothstep(lo: float, hi: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _colour(bgr: tuple[float, float, float]) -> np.ndarray:
    return np.asarray(bgr, np.float32)


def _bgra(colour: np.ndarray, wet: np.ndarray) -> np.ndarray:
    """(H, W, 4) uint8: BGR and, as the 4th channel, the wetness (strength of the specular
    highlights); one 4-channel ``cv2.remap`` samples both (and is faster than 3 channels)."""
    out = np.empty((*wet.shape, 4), np.uint8)
    out[..., :3] = np.clip(colour, 0, 255)
    out[..., 3] = np.clip(wet, 0, 255)
    return out


def _skin_texture(layout: FieldLayout, rng: np.random.Generator, light_dir: np.ndarray,
                  half_extent_mm: tuple[float, float]) -> np.ndarray:
    """Top view of the draped patient (x right-left, z), opening centre in the middle."""
    hx, hz = half_extent_mm
    width, height = round(2 * hx / _SKIN_TEXEL_MM), round(2 * hz / _SKIN_TEXEL_MM)
    xs = (np.arange(width, dtype=np.float32) + 0.5) * _SKIN_TEXEL_MM - hx
    zs = hz - (np.arange(height, dtype=np.float32) + 0.5) * _SKIN_TEXEL_MM
    dx, dz = np.meshgrid(xs, zs)                   # mm from the opening centre
    rx, rz = layout.opening_semi_axes_mm
    ell = np.sqrt((dx / rx) ** 2 + (dz / rz) ** 2)  # 1 on the opening's edge
    n_fine = _noise(rng, (height, width), 60, octaves=3)
    n_mid = _noise(rng, (height, width), 18, octaves=4)
    # drapes: blue-green cloth with folds
    folds = 1.0 - np.abs(2.0 * _noise(rng, (height, width), 3, octaves=3) - 1.0)
    drape = _colour((118, 122, 52)) * (0.72 + 0.3 * folds[..., None] + 0.05 * n_fine[..., None])
    # white surgical towels around the skin window (woven, folded, a blue stripe, blood)
    tx, tz = rx + 120.0, rz + 140.0
    towel_box = np.maximum(np.abs(dx) / tx, np.abs(dz) / tz) + 0.05 * (n_mid - 0.5)
    weave = _noise(rng, (height, width), 220, octaves=1)
    towel_folds = 1.0 - np.abs(2.0 * _noise(rng, (height, width), 9, octaves=3) - 1.0)
    towel = _colour((198, 204, 208)) * (0.78 + 0.18 * towel_folds[..., None]
                                        + 0.06 * weave[..., None])
    stripe = np.abs(np.maximum(np.abs(dx) / (tx - 20.0), np.abs(dz) / (tz - 20.0)) - 1.0) \
        < 0.012
    towel[stripe] = towel[stripe] * 0.5 + _colour((150, 95, 40)) * 0.5
    towel_blood = _smoothstep(0.74, 0.86, _noise(rng, (height, width), 14, octaves=4))
    towel = _mix(towel, _colour((35, 35, 105)), 0.85 * towel_blood)
    image = _mix(drape, towel, _smoothstep(1.0, 0.985, towel_box))
    # skin window: iodine-prepped skin, rounded rectangle with a ragged towel edge
    wx, wz = rx + 32.0, rz + 40.0
    box = np.maximum(np.abs(dx) / wx, np.abs(dz) / wz) + 0.08 * (n_mid - 0.5)
    iodine = _smoothstep(0.2, 0.8, n_mid)
    skin = _mix(_colour((125, 150, 205)), _colour((55, 100, 170)), 0.2 + 0.5 * iodine)
    skin = skin * (0.9 + 0.14 * n_fine[..., None])
    window = _smoothstep(1.0, 0.985, box)
    image = _mix(image, skin, window)
    # towel edge shadow on the skin
    image *= (1.0 - 0.35 * _smoothstep(0.9, 0.985, box) * window)[..., None]
    # wound edge: skin margin reddened, then yellow fat, then red muscle toward the opening
    edge = (ell - 1.0) * min(rx, rz)                # mm outside the opening edge
    edge = edge + 3.0 * (n_mid - 0.5)
    fat = _mix(_colour((70, 150, 200)), _colour((55, 120, 185)), n_fine)
    muscle = _mix(_colour((40, 45, 150)), _colour((55, 60, 175)), n_fine)
    image = _mix(image, _mix(_colour((80, 100, 190)), image, _smoothstep(6, 16, edge)),
                 _smoothstep(20, 8, edge))
    image = _mix(image, fat, _smoothstep(6.5, 4.0, edge))
    image = _mix(image, muscle, _smoothstep(2.5, 0.5, edge))
    # blood smears near the wound
    blood = (_noise(rng, (height, width), 25, octaves=3) > 0.78) & (edge < 30) & (edge > -5)
    image[blood] = image[blood] * 0.3 + _colour((20, 20, 95)) * 0.7
    # baked diffuse light on the cylinder (beyond it: drapes hanging down the sides)
    a, b = layout.body_semi_axes_mm
    x_abs = dx + layout.opening_centre_mm[0] - layout.body_centre_mm[0]
    ratio = np.clip(x_abs / a, -0.999, 0.999)
    nx = ratio / a
    ny = -np.sqrt(1.0 - ratio ** 2) / b
    norm = np.sqrt(nx ** 2 + ny ** 2)
    lambert = np.clip((nx * light_dir[0] + ny * light_dir[1]) / norm, 0.0, 1.0)
    image *= (0.45 + 0.6 * lambert)[..., None]
    wet = np.where(edge < 8.0, 150.0, 35.0) * (0.5 + n_fine)
    wet[blood] = 230.0
    wet = np.where(window > 0.5, wet, 25.0 * towel_blood)
    return _bgra(image, wet)


def _bowl_texture(rng: np.random.Generator, layout: FieldLayout,
                  light_dir: np.ndarray) -> np.ndarray:
    """The cavity as an azimuthal map: centre = deepest point, radius pi/2 = the rim."""
    size = _BOWL_TEXELS
    coords = ((np.arange(size, dtype=np.float32) + 0.5) / size * 2.0 - 1.0) * _BOWL_RADIUS_RAD
    p, q = np.meshgrid(coords, -coords)             # p along x, q along z
    phi = np.sqrt(p ** 2 + q ** 2)                  # 0 at the floor, pi/2 at the rim
    azimuth = np.arctan2(q, p)
    n_fine = _noise(rng, (size, size), 70, octaves=3)
    n_mid = _noise(rng, (size, size), 16, octaves=4)
    n_big = _noise(rng, (size, size), 5, octaves=3)
    # floor: resection bed, dark red with fibrin and cautery marks, pools of blood
    bed = _mix(_colour((40, 42, 125)), _colour((55, 70, 160)), n_mid)
    fibrin = _smoothstep(0.62, 0.75, _noise(rng, (size, size), 22, octaves=3))
    bed = _mix(bed, _colour((130, 165, 205)), 0.8 * fibrin)
    char = _noise(rng, (size, size), 40, octaves=2) > 0.86
    bed[char] = _colour((35, 45, 70))
    pool = _smoothstep(0.68, 0.8, n_big) * _smoothstep(0.9, 0.5, phi)
    bed = _mix(bed, _colour((18, 18, 95)), 0.9 * pool)
    # walls: retracted bowel loops (pink tubes circling the cavity) and mesenteric fat
    loops = np.abs(np.sin(11.0 * phi + 6.0 * n_big + 1.6 * np.sin(4.0 * azimuth + 3.0 * n_mid)))
    tube = np.sqrt(np.clip(loops, 0.0, 1.0))
    bowel = _mix(_colour((100, 110, 195)), _colour((140, 150, 230)), n_fine) * \
        (0.3 + 0.7 * tube[..., None])
    fatty = _smoothstep(0.55, 0.7, _noise(rng, (size, size), 10, octaves=3))
    wall = _mix(bowel, _colour((85, 180, 225)) * (0.8 + 0.25 * n_fine[..., None]), 0.85 * fatty)
    vessels = np.abs(_noise(rng, (size, size), 12, octaves=3) - 0.5) < 0.012
    wall[vessels] = _colour((60, 40, 120))
    image = _mix(bed, wall, _smoothstep(0.55, 0.8, phi + 0.08 * (n_mid - 0.5)))
    # rim: the cut abdominal wall (fat then muscle) toward the skin
    rim = _smoothstep(1.3, 1.5, phi + 0.05 * (n_mid - 0.5))
    image = _mix(image, _mix(_colour((65, 140, 190)), _colour((40, 45, 145)),
                             _smoothstep(1.42, 1.55, phi)), rim)
    # baked light: bowl normal (inward) from the azimuthal coordinates, and occlusion
    rx, rz = layout.opening_semi_axes_mm
    depth = layout.cavity_depth_mm
    s = np.sin(np.clip(phi, 0.0, np.pi / 2))
    ux = s * np.cos(azimuth)
    uz = s * np.sin(azimuth)
    uy = np.cos(np.clip(phi, 0.0, np.pi / 2))
    nx, ny, nz = -ux / rx, -uy / depth, -uz / rz
    norm = np.sqrt(nx ** 2 + ny ** 2 + nz ** 2)
    lambert = np.clip((nx * light_dir[0] + ny * light_dir[1] + nz * light_dir[2]) / norm,
                      0.0, 1.0)
    occlusion = 0.65 + 0.35 * np.sqrt(np.maximum(np.cos(np.clip(phi, 0.0, np.pi / 2)), 0))
    image *= ((0.3 + 0.8 * lambert) * occlusion)[..., None]
    wet = (120.0 + 120.0 * pool) * (0.4 + n_fine) * (1.0 - 0.8 * fibrin)
    wet = wet * (1.0 - 0.6 * fatty * (phi > 0.6)) * (1.0 - 0.5 * rim)
    return _bgra(image, wet)


def _cylinder_strip(base_bgr: np.ndarray, n: int = 96) -> np.ndarray:
    """(1, n, 3) uint8 shading across a lit cylinder, silhouette edge to edge."""
    s = np.linspace(-1.0, 1.0, n)
    body = np.sqrt(np.clip(1.0 - s * s, 0.0, 1.0))
    light = 0.35 + 0.55 * body * (0.8 - 0.25 * s) + 0.9 * np.exp(-((s + 0.35) / 0.12) ** 2)
    return np.clip(light[None, :, None] * base_bgr, 0, 255).astype(np.uint8)


def _steel_colour(shade: float) -> tuple[float, float, float]:
    v = float(np.clip(shade, 0.0, 1.0))
    return (60 + 170 * v, 62 + 168 * v, 66 + 160 * v)


# -- geometry helpers ---------------------------------------------------------------------
def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _perpendicular_basis(axis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    helper = np.array([1.0, 0.0, 0.0]) if abs(axis[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    u = _unit(np.cross(axis, helper))
    return u, np.cross(axis, u)


@dataclass
class _Plate:
    """A tool's plate texture as a mip pyramid, with its texel-to-tool mapping."""

    levels: list[np.ndarray]
    tool_from_texel: np.ndarray        # (4, 3) at level 0
    texels_per_mm: float
    corners_mm: np.ndarray             # (4, 3) tool frame
    normal: np.ndarray


def _plate(tool: ToolDefinition) -> _Plate:
    tex = plate_texture(tool, _PLATE_TEXELS_PER_MM)
    block = 2 ** (_MIP_LEVELS - 1)
    height, width = tex.image.shape
    padded = cv2.copyMakeBorder(tex.image, 0, (-height) % block, 0, (-width) % block,
                                cv2.BORDER_CONSTANT, value=255)
    padded = (padded.astype(np.float32) * 0.93 + 0.5).astype(np.uint8)   # matte print
    levels = [padded]
    for _ in range(_MIP_LEVELS - 1):
        prev = levels[-1]
        levels.append(cv2.resize(prev, (prev.shape[1] // 2, prev.shape[0] // 2),
                                 interpolation=cv2.INTER_AREA))
    # the valid (unpadded) part of each level, so padding is not drawn
    levels = [lvl[:int(np.ceil(height / 2 ** k)), :int(np.ceil(width / 2 ** k))]
              for k, lvl in enumerate(levels)]
    return _Plate(levels=levels, tool_from_texel=tex.tool_from_texel(),
                  texels_per_mm=tex.texels_per_mm, corners_mm=tex.corners_mm(),
                  normal=tex.normal)


@dataclass
class _Grid:
    """Per block of the ray-casting grid (flat arrays): skin and bowl texture coordinates
    (texels), how far inside the opening (> 0 in it), specular lobe, lamp pool gain."""

    skin_u: np.ndarray
    skin_v: np.ndarray
    inside: np.ndarray
    bowl_u: np.ndarray
    bowl_v: np.ndarray
    lobe: np.ndarray
    pool: np.ndarray


@dataclass
class _Blade:
    """A retractor blade: facets (N, 4, 3) and their unit normals (N, 3), patient mm."""

    quads: np.ndarray
    normals: np.ndarray


@dataclass
class _Item:
    """Something drawn over the field, with its depth (camera z, mm) for sorting."""

    depth_mm: float
    kind: str
    payload: object
    label: int = 0


class RealisticField:
    """Fast renderer of a realistic open-abdomen field with tracked tools and known truth.

    A drop-in for :class:`~guidance.sim.camera.SimulatedCamera` (same ``render`` and truth);
    gloved hands are given per frame (``patient_from_hands``), e.g. from
    :class:`SurgeonHands`.

    Parameters
    ----------
    tools : mapping name -> ToolDefinition or sequence of ToolDefinition
        Tools that can appear (planar marker plates).
    camera_matrix : (3, 3) array
        Intrinsics (px).
    image_size : (int, int)
        ``(width, height)``.
    dist_coeffs : array, optional
        OpenCV distortion coefficients of the camera (in the rendered geometry).
    effects : SimEffects
        Noise, flicker, vignetting, motion blur, marker glare (dropout / occluded ids).
    rng : numpy.random.Generator, optional
        Source of every random draw (textures first); default ``default_rng(0)``.
    layout : FieldLayout
        Patient and opening geometry (default: the built-in phantom's).
    options : FieldOptions
        Lamp, gradient, highlights.
    applicator_diameter_mm : float
        Diameter of the rendered applicator tube.
    patient_from_reference_post : (4, 4) array, optional
        Where the reference plate's retractor post stands: drawn from the skin up to it.

    Examples
    --------
    >>> from guidance.tracking.tools import load_builtin_tools
    >>> from guidance.sim.camera import look_at
    >>> k = np.array([[1000.0, 0, 639.5], [0, 1000.0, 359.5], [0, 0, 1]])
    >>> layout = FieldLayout()
    >>> eye = layout.opening_centre_mm + np.array([0.0, -450.0, 0.0])
    >>> camera_from_patient = invert_rigid(look_at(eye, layout.opening_centre_mm))
    >>> with RealisticField(load_builtin_tools(), k) as field:
    ...     shot = field.render(camera_from_patient, {})
    >>> shot.image.shape, shot.image.dtype.name
    ((720, 1280, 3), 'uint8')
    """

    def __init__(self, tools: Mapping[str, ToolDefinition] | Sequence[ToolDefinition],
                 camera_matrix: np.ndarray, *, image_size: tuple[int, int] = (1280, 720),
                 dist_coeffs: np.ndarray | None = None, effects: SimEffects | None = None,
                 rng: np.random.Generator | None = None, layout: FieldLayout | None = None,
                 options: FieldOptions | None = None, applicator_diameter_mm: float = 60.0,
                 patient_from_reference_post: np.ndarray | None = None) -> None:
        self.camera_matrix = as_array(camera_matrix, name="camera_matrix", shape=(3, 3))
        width, height = (int(v) for v in image_size)
        if width < 2 * _BLOCK_PX or height < 2 * _BLOCK_PX:
            raise InputError(f"image_size must be at least {2 * _BLOCK_PX} px each way, "
                             f"got {image_size}")
        self.image_size = (width, height)
        values = tools.values() if isinstance(tools, Mapping) else tools
        self.tools = check_tool_set(values)
        self.effects = effects if effects is not None else SimEffects()
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.layout = layout if layout is not None else FieldLayout()
        self.options = options if options is not None else FieldOptions()
        self.dist_coeffs = (None if dist_coeffs is None
                            else as_array(dist_coeffs, name="dist_coeffs").ravel())
        self.applicator_diameter_mm = float(applicator_diameter_mm)
        self.patient_from_reference_post = (
            None if patient_from_reference_post is None
            else as_transform(patient_from_reference_post, name="patient_from_reference_post"))
        self._dist = np.zeros(5) if self.dist_coeffs is None else self.dist_coeffs
        # the lamp: above the patient, a little superior and to the patient's right
        self._lamp_mm = self.layout.opening_centre_mm + np.array([-120.0, -1100.0, 250.0])
        self._light_dir = _unit(self._lamp_mm - self.layout.opening_centre_mm)
        self._rays_full = np.ascontiguousarray(
            self._pixel_rays(np.arange(width), np.arange(height))[..., :2])
        grid_x = np.arange(width // _BLOCK_PX) * _BLOCK_PX + (_BLOCK_PX - 1) / 2.0
        grid_y = np.arange(height // _BLOCK_PX) * _BLOCK_PX + (_BLOCK_PX - 1) / 2.0
        self._grid_shape = (len(grid_y), len(grid_x))
        self._rays_grid = self._pixel_rays(grid_x, grid_y).reshape(-1, 3)
        self._vignette = self._vignette_grid()
        self._skin_half_mm = (330.0, 420.0)
        log.debug("drawing the field textures")
        self._skin = _skin_texture(self.layout, self.rng, self._light_dir, self._skin_half_mm)
        self._bowl = _bowl_texture(self.rng, self.layout, self._light_dir)
        self._plates = {name: _plate(tool) for name, tool in self.tools.items()}
        self._labels = {name: k + 2 for k, name in enumerate(self.tools)}
        self._blade_cache: list[_Blade] | None = None
        self._opening: tuple | None = None   # (roi slices, alpha) of the opening this frame
        self._gain: np.ndarray | None = None    # light on the tools this frame (128 = 1)
        self._strips = {name: _cylinder_strip(_colour(bgr))
                        for name, bgr in (("pmma", (200, 196, 186)), ("steel", (175, 178, 185)))}
        self._previous_camera_from_patient: np.ndarray | None = None
        self._noise_bank: tuple[np.ndarray, np.ndarray] | None = None
        self._closed = False

    # -- life cycle ---------------------------------------------------------------------
    def close(self) -> None:
        """Release the textures (the renderer holds no window)."""
        self._closed = True

    def __enter__(self) -> RealisticField:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- camera model ---------------------------------------------------------------------
    def _pixel_rays(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """Camera-frame ray directions (z = 1) of distorted pixels, (len(ys), len(xs), 3)."""
        u, v = np.meshgrid(np.asarray(xs, np.float64), np.asarray(ys, np.float64))
        pts = np.c_[u.ravel(), v.ravel()].reshape(-1, 1, 2)
        criteria = (cv2.TERM_CRITERIA_COUNT + cv2.TERM_CRITERIA_EPS, 40, 1e-9)
        ideal = cv2.undistortPoints(pts, self.camera_matrix, self._dist,
                                    criteria=criteria).reshape((*u.shape, 2))
        return np.concatenate([ideal, np.ones((*u.shape, 1))], axis=2).astype(np.float32)

    def project(self, camera_from_frame: np.ndarray, points_mm: np.ndarray) -> np.ndarray:
        """Pixels (N, 2) of points given in some frame, with this camera's distortion."""
        pts = as_array(points_mm, name="points_mm", shape=(None, 3))
        m = as_transform(camera_from_frame, name="camera_from_frame")
        return self._project(m, pts)

    def _project(self, camera_from_frame: np.ndarray, points: np.ndarray) -> np.ndarray:
        cam = points @ camera_from_frame[:3, :3].T + camera_from_frame[:3, 3]
        cam[:, 2] = np.maximum(cam[:, 2], 1.0)
        proj, _ = cv2.projectPoints(cam, np.zeros(3), np.zeros(3), self.camera_matrix,
                                    self._dist)
        return proj.reshape(-1, 2)

    def _vignette_grid(self) -> np.ndarray:
        h, w = self._grid_shape
        u = (np.arange(w) - (w - 1) / 2) / (w / 2)
        v = (np.arange(h) - (h - 1) / 2) / (h / 2)
        r2 = (u[None, :] ** 2 + v[:, None] ** 2) / 2.0
        ramp = 1.0 + 0.5 * self.options.light_gradient * (-u[None, :] + 0.3 * v[:, None])
        return ((1.0 - self.effects.vignetting * 1.6 * r2) * ramp).astype(np.float32)

    # -- rendering ----------------------------------------------------------------------
    def render(self, camera_from_patient: np.ndarray,
               patient_from_tool: Mapping[str, np.ndarray], *,
               patient_from_hands: Sequence[HandPose] = ()) -> SimulatedImage:
        """Render one frame.

        Parameters
        ----------
        camera_from_patient : (4, 4) array
            Pose of the camera: patient LPS mm to OpenCV camera mm.
        patient_from_tool : mapping name -> (4, 4) array
            Pose of each tool in the scene; tools not listed are not drawn.
        patient_from_hands : sequence of HandPose
            Gloved hands in the scene.

        Returns
        -------
        SimulatedImage
            BGR uint8 (H, W, 3) image and the ground truth (``occluded_marker_ids`` lists
            markers covered by a hand, another tool or glare).
        """
        if self._closed:
            raise RuntimeError("RealisticField is closed")
        cam_from_pat = as_transform(camera_from_patient, name="camera_from_patient", rigid=True)
        unknown = set(patient_from_tool) - set(self.tools)
        if unknown:
            raise InputError(f"patient_from_tool names unknown tools {sorted(unknown)}; "
                             f"known: {sorted(self.tools)}")
        truth_tools = {name: cam_from_pat @ as_transform(pose, name=f"patient_from_tool[{name}]",
                                                         rigid=True)
                       for name, pose in patient_from_tool.items()}
        image, self._gain = self._field(cam_from_pat)
        labels = np.zeros(image.shape[:2], np.uint8)
        items = self._items(cam_from_pat, truth_tools, patient_from_tool, patient_from_hands)
        plate_quads: dict[str, list] = {}
        for item in sorted(items, key=lambda it: -it.depth_mm):
            if item.kind == "plate":
                plate_quads[item.payload] = self._draw_plate(image, labels, item.payload,
                                                             truth_tools[item.payload],
                                                             item.label)
            elif item.kind == "cylinder":
                self._draw_cylinder(image, labels, cam_from_pat, *item.payload,
                                    label=item.label)
            elif item.kind == "blade":
                self._draw_blade(image, labels, cam_from_pat, item.payload)
            elif item.kind == "hand":
                self._draw_hand(image, labels, cam_from_pat, item.payload, item.label)
        occluded = self._occluded(labels, plate_quads)
        occluded |= self._glare(image, truth_tools)
        image, blur_px = self._blur(image, cam_from_pat, truth_tools)
        if self.effects.noise_sigma > 0:
            self._add_noise(image)
        self._previous_camera_from_patient = cam_from_pat
        truth = SimTruth(camera_from_patient=cam_from_pat, camera_from_tool=truth_tools,
                         occluded_marker_ids=tuple(sorted(occluded)), blur_px=blur_px)
        return SimulatedImage(image=image, truth=truth)

    # -- the field: ray cast, textures, lighting --------------------------------------------
    def _field(self, cam_from_pat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The field image (BGR uint8) and the light gain (BGR uint8, 128 = 1)."""
        return self._compose(self._cast(cam_from_pat))

    def _cast(self, cam_from_pat: np.ndarray) -> _Grid:
        """Ray cast the grid of pixel blocks against the body and the bowl."""
        layout = self.layout
        pat_from_cam = invert_rigid(cam_from_pat)
        eye = pat_from_cam[:3, 3]
        dirs = self._rays_grid @ pat_from_cam[:3, :3].T.astype(np.float32)
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        a, b = layout.body_semi_axes_mm
        bc = layout.body_centre_mm
        # body: elliptic cylinder along z; beyond it the drapes at the body's mid-plane
        ox, oy = (eye[0] - bc[0]) / a, (eye[1] - bc[1]) / b
        dx, dy = dirs[:, 0] / a, dirs[:, 1] / b
        qa = dx * dx + dy * dy
        qb = 2.0 * (ox * dx + oy * dy)
        qc = ox * ox + oy * oy - 1.0
        disc = qb * qb - 4.0 * qa * qc
        hit_body = disc > 0
        t_body = (-qb - np.sqrt(np.maximum(disc, 0.0))) / (2.0 * qa + 1e-12)
        t_plane = (bc[1] - eye[1]) / np.where(np.abs(dirs[:, 1]) > 1e-6, dirs[:, 1], 1e-6)
        t_skin = np.where(hit_body & (t_body > 0), t_body, np.abs(t_plane))
        p = eye + dirs * t_skin[:, None]
        centre = layout.opening_centre_mm
        rx, rz = layout.opening_semi_axes_mm
        depth = layout.cavity_depth_mm
        # skin texture coordinates (top view, texels)
        hx, hz = self._skin_half_mm
        skin_u = (p[:, 0] - centre[0] + hx) / _SKIN_TEXEL_MM - 0.5
        skin_v = (hz - (p[:, 2] - centre[2])) / _SKIN_TEXEL_MM - 0.5
        # the opening: where the skin point lies inside the bowl (ellipsoid below the skin)
        rel = (p - centre) / np.array([rx, depth, rz])
        inside = 1.0 - np.sum(rel * rel, axis=1)           # > 0 in the opening
        # bowl: the far intersection of the ray with the ellipsoid
        oe = (eye - centre) / np.array([rx, depth, rz])
        de = dirs / np.array([rx, depth, rz], np.float32)
        ea = np.sum(de * de, axis=1)
        eb = 2.0 * de @ oe
        ec = oe @ oe - 1.0
        edisc = eb * eb - 4.0 * ea * ec
        t_bowl = (-eb + np.sqrt(np.maximum(edisc, 0.0))) / (2.0 * ea)
        unit = oe + de * t_bowl[:, None]                    # on the unit sphere
        unit /= np.linalg.norm(unit, axis=1, keepdims=True)
        horizontal = np.hypot(unit[:, 0], unit[:, 2])
        phi = np.arctan2(horizontal, unit[:, 1])            # 0 at the deepest point
        scale = phi / np.maximum(horizontal, 1e-6)
        bp = unit[:, 0] * scale
        bq = unit[:, 2] * scale
        bowl_u = (bp / _BOWL_RADIUS_RAD + 1.0) * 0.5 * _BOWL_TEXELS - 0.5
        bowl_v = (1.0 - bq / _BOWL_RADIUS_RAD) * 0.5 * _BOWL_TEXELS - 0.5
        in_bowl = inside > 0
        hit = np.where(in_bowl[:, None], eye + dirs * t_bowl[:, None], p)
        # normals: the cylinder's (outward) or the bowl's (inward)
        n_skin = np.c_[(p[:, 0] - bc[0]) / a ** 2, (p[:, 1] - bc[1]) / b ** 2,
                       np.zeros(len(p))]
        n_skin[~(hit_body & (t_body > 0))] = (0.0, -1.0, 0.0)
        n_bowl = -unit / np.array([rx, depth, rz])
        normal = np.where(in_bowl[:, None], n_bowl, n_skin)
        normal /= np.linalg.norm(normal, axis=1, keepdims=True)
        to_lamp = self._lamp_mm - hit
        to_lamp /= np.linalg.norm(to_lamp, axis=1, keepdims=True)
        to_eye = eye - hit
        to_eye /= np.linalg.norm(to_eye, axis=1, keepdims=True)
        half = to_lamp + to_eye
        half /= np.linalg.norm(half, axis=1, keepdims=True)
        n_dot_h = np.clip(np.sum(normal * half, axis=1), 0.0, 1.0)
        lobe = self.options.specular * (0.85 * n_dot_h ** 60 + 0.25 * n_dot_h ** 8)
        # light: lamp pool on the surface, vignetting and gradient in the image, flicker
        pool_r = self.options.lamp_pool_radius_mm
        off = hit[:, [0, 2]] - self._lamp_mm[[0, 2]] * np.array([0.3, 1.0]) \
            - centre[[0, 2]] * np.array([0.7, 0.0])
        off[:, 1] = hit[:, 2] - centre[2] - 40.0
        pool = 1.0 + self.options.lamp_pool * np.exp(-np.sum(off * off, axis=1)
                                                     / (2 * pool_r ** 2))
        return _Grid(skin_u=skin_u, skin_v=skin_v, inside=inside, bowl_u=bowl_u,
                     bowl_v=bowl_v, lobe=lobe, pool=pool)

    def _compose(self, grid: _Grid) -> tuple[np.ndarray, np.ndarray]:
        """Sample the textures, light the field (half resolution), enlarge it."""
        width, height = self.image_size
        gh, gw = self._grid_shape
        skin_u, skin_v, inside = grid.skin_u, grid.skin_v, grid.inside
        bowl_u, bowl_v, lobe = grid.bowl_u, grid.bowl_v, grid.lobe
        flicker = 1.0
        if self.effects.brightness_jitter > 0:
            flicker = float(np.clip(1.0 + self.rng.normal(0.0, self.effects.brightness_jitter),
                                    0.3, 2.0))
        light = (grid.pool.reshape(gh, gw) * self._vignette * (0.78 * flicker)).astype(
            np.float32)
        gain_grid = np.clip(light * 128.0, 0, 255)
        gain_grid = np.dstack([gain_grid * 0.97, gain_grid, gain_grid * 1.02]).astype(np.uint8)
        gain = cv2.resize(gain_grid, (width, height), interpolation=cv2.INTER_LINEAR)
        # the field is composed, lit and given its highlights at half resolution, then
        # enlarged: tissue, towels and drapes are smooth at the camera's scale; the tools
        # drawn over it (the marker plates above all) are full resolution
        hw, hh = width // 2, height // 2
        step = _BLOCK_PX // 2

        def half(*values: np.ndarray) -> np.ndarray:
            grid = np.dstack([v.reshape(gh, gw) for v in values]).astype(np.float32)
            return cv2.resize(grid, (hw, hh), interpolation=cv2.INTER_LINEAR)

        image = cv2.remap(self._skin, half(skin_u, skin_v), None, cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
        self._opening = None
        opening = inside.reshape(gh, gw) > -0.15
        if np.any(opening):
            rows = np.flatnonzero(opening.any(axis=1))
            cols = np.flatnonzero(opening.any(axis=0))
            y0, y1 = max(0, (rows[0] - 1) * step), min(hh, (rows[-1] + 2) * step)
            x0, x1 = max(0, (cols[0] - 1) * step), min(hw, (cols[-1] + 2) * step)
            roi = (slice(y0, y1), slice(x0, x1))
            maps = half(bowl_u, bowl_v, inside)[roi]
            bowl = cv2.remap(self._bowl, np.ascontiguousarray(maps[..., :2]), None,
                             cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            alpha = np.clip(maps[..., 2] * 40.0 + 0.5, 0.0, 1.0)
            image[roi] = cv2.blendLinear(bowl, image[roi], alpha, 1.0 - alpha)
            self._opening = ((slice(2 * y0, 2 * y1), slice(2 * x0, 2 * x1)), alpha)
        lobe_u8 = cv2.resize(np.clip(lobe * 255.0, 0, 255).astype(np.uint8).reshape(gh, gw),
                             (hw, hh), interpolation=cv2.INTER_LINEAR)
        spec = cv2.multiply(cv2.extractChannel(image, 3), lobe_u8, scale=1.0 / 255.0)
        bgr = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
        cv2.multiply(bgr, cv2.resize(gain_grid, (hw, hh), interpolation=cv2.INTER_LINEAR),
                     dst=bgr, scale=1.0 / 128.0)
        cv2.add(bgr, cv2.cvtColor(spec, cv2.COLOR_GRAY2BGR), dst=bgr)
        return cv2.resize(bgr, (width, height), interpolation=cv2.INTER_LINEAR), gain

    def _opening_alpha(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """How much of each pixel of ``[y0:y1, x0:x1]`` sees into the opening (0..1)."""
        out = np.zeros((y1 - y0, x1 - x0), np.float32)
        if self._opening is None:
            return out
        (rows, cols), alpha_half = self._opening
        oy0, oy1 = max(y0, rows.start), min(y1, rows.stop)
        ox0, ox1 = max(x0, cols.start), min(x1, cols.stop)
        if oy1 <= oy0 or ox1 <= ox0:
            return out
        full = cv2.resize(alpha_half, (cols.stop - cols.start, rows.stop - rows.start),
                          interpolation=cv2.INTER_LINEAR)
        out[oy0 - y0:oy1 - y0, ox0 - x0:ox1 - x0] = full[oy0 - rows.start:oy1 - rows.start,
                                                         ox0 - cols.start:ox1 - cols.start]
        return out

    def _lit(self, patch: np.ndarray, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """A BGR patch drawn at ``[y0:y1, x0:x1]`` under this frame's light."""
        return cv2.multiply(patch, self._gain[y0:y1, x0:x1], scale=1.0 / 128.0)

    def _lit_colour(self, bgr: tuple[float, float, float], at_px: np.ndarray
                    ) -> tuple[float, float, float]:
        """A flat colour under the light at one pixel."""
        width, height = self.image_size
        x = int(np.clip(at_px[0], 0, width - 1))
        y = int(np.clip(at_px[1], 0, height - 1))
        g = self._gain[y, x].astype(np.float64) / 128.0
        return tuple(float(min(255.0, c * k)) for c, k in zip(bgr, g, strict=True))

    # -- objects over the field -------------------------------------------------------------
    def _items(self, cam_from_pat: np.ndarray, camera_from_tool: Mapping[str, np.ndarray],
               patient_from_tool: Mapping[str, np.ndarray],
               hands: Sequence[HandPose]) -> list[_Item]:
        items: list[_Item] = []

        def depth_of(point_patient: np.ndarray) -> float:
            return float(cam_from_pat[2, :3] @ point_patient + cam_from_pat[2, 3])

        for blade in self._blades():
            items.append(_Item(depth_of(blade.quads.reshape(-1, 3).mean(axis=0)), "blade",
                               blade))
        post = self.patient_from_reference_post
        if post is not None:
            top = post[:3, 3] + post[:3, :3] @ np.array([0.0, 0.0, -6.0])
            foot = top.copy()
            foot[1] = self.layout.opening_centre_mm[1] + 10.0
            items.append(_Item(depth_of(0.5 * (top + foot)) + 5.0, "cylinder",
                               (top, foot, 7.0, "steel"), label=1))
        for name, pose in patient_from_tool.items():
            tool = self.tools[name]
            plate = self._plates[name]
            centre_tool = plate.corners_mm.mean(axis=0)
            centre = pose[:3, :3] @ centre_tool + pose[:3, 3]
            label = self._labels[name]
            items.append(_Item(depth_of(centre), "plate", name, label))
            if tool.tip_mm is not None:
                tip = pose[:3, :3] @ tool.tip_mm + pose[:3, 3]
                start = pose[:3, :3] @ (centre_tool - 4.0 * plate.normal) + pose[:3, 3]
                items.append(_Item(depth_of(0.5 * (start + tip)) + 1.0, "cylinder",
                                   (start, tip, 3.0, "steel"), label))
            elif tool.tool_from_applicator is not None:
                end = (pose @ tool.tool_from_applicator)[:3, 3]
                start = pose[:3, :3] @ (centre_tool - 5.0 * plate.normal) + pose[:3, 3]
                radius = self.applicator_diameter_mm / 2
                skin_y = self.layout.opening_centre_mm[1]
                if start[1] < skin_y < end[1]:     # the part in the wound shows through it
                    cut = start + (end - start) * (skin_y - start[1]) / (end[1] - start[1])
                    items.append(_Item(depth_of(0.5 * (cut + end)) + 500.0, "cylinder",
                                       (cut, end, radius, "pmma", True), label))
                    end = cut
                items.append(_Item(max(depth_of(start) + 1.0, depth_of(0.5 * (start + end))),
                                   "cylinder", (start, end, radius, "pmma"), label))
        for k, hand in enumerate(hands):
            centre = as_transform(hand.patient_from_hand, name="patient_from_hand")[:3, 3]
            items.append(_Item(depth_of(centre), "hand", hand, label=200 + k))
        return items

    def _blades(self) -> list[_Blade]:
        """Retractor blades on the wound edges (patient mm), built once."""
        if self._blade_cache is not None:
            return self._blade_cache
        layout = self.layout
        c = layout.opening_centre_mm
        rx, rz = layout.opening_semi_axes_mm
        depth = layout.cavity_depth_mm
        up = np.array([0.0, -1.0, 0.0])
        blades = []
        for azimuth in (0.0, np.pi, 1.5 * np.pi):
            out = np.array([np.cos(azimuth), 0.0, np.sin(azimuth)])
            pts = []
            for s in np.linspace(0.0, 1.0, 9):        # down the wall, over the lip, out
                if s < 0.55:
                    w = s / 0.55                        # 0 = deep in the wall, 1 = rim
                    ang = np.radians(35.0 + 55.0 * w)
                    pts.append(c + np.array([np.cos(azimuth) * rx * np.sin(ang),
                                             depth * 0.55 * np.cos(ang),
                                             np.sin(azimuth) * rz * np.sin(ang)]))
                else:
                    w = (s - 0.55) / 0.45
                    radius = np.array([rx, 0.0, rz]) * out
                    pts.append(c + radius + out * (4.0 + 26.0 * w)
                               + np.array([0.0, -6.0 - 10.0 * w, 0.0]))
            line = np.array(pts)
            tangent = np.gradient(line, axis=0)
            quads, normals = [], []
            for i in range(len(line) - 1):
                t = _unit(tangent[i] + tangent[i + 1])
                across = _unit(np.cross(t, up))
                normal = _unit(np.cross(across, t))
                normal = normal if normal @ up >= 0 else -normal
                quads.append([line[i] - 22 * across, line[i] + 22 * across,
                              line[i + 1] + 22 * across, line[i + 1] - 22 * across])
                normals.append(normal)
            blades.append(_Blade(np.array(quads), np.array(normals)))
        self._blade_cache = blades
        return blades

    def _draw_blade(self, image: np.ndarray, labels: np.ndarray, cam_from_pat: np.ndarray,
                    blade: _Blade) -> None:
        """Brushed steel, one flat-shaded facet per segment (Lambert + Phong)."""
        eye = invert_rigid(cam_from_pat)[:3, 3]
        centres = blade.quads.mean(axis=1)
        to_eye = eye - centres
        to_eye /= np.linalg.norm(to_eye, axis=1, keepdims=True)
        half = self._light_dir + to_eye
        half /= np.linalg.norm(half, axis=1, keepdims=True)
        diffuse = np.clip(blade.normals @ self._light_dir, 0.0, 1.0)
        spec = np.clip(np.sum(blade.normals * half, axis=1), 0.0, 1.0) ** 30
        shade = 0.12 + 0.3 * diffuse + 0.45 * spec
        pix = self._project(cam_from_pat, blade.quads.reshape(-1, 3)).reshape(-1, 4, 2)
        for quad, value in zip(pix, shade, strict=True):
            cv2.fillConvexPoly(image, np.round(quad * 16).astype(np.int32),
                               self._lit_colour(_steel_colour(value), quad.mean(axis=0)),
                               lineType=cv2.LINE_AA, shift=4)
            cv2.fillConvexPoly(labels, np.round(quad).astype(np.int32), 1)
        # the blade's rolled edges catch less light
        for side in (np.r_[pix[:, 0], pix[-1:, 3]], np.r_[pix[:, 1], pix[-1:, 2]]):
            cv2.polylines(image, [np.round(side * 16).astype(np.int32)], False,
                          self._lit_colour((55, 58, 62), side.mean(axis=0)), 2, cv2.LINE_AA,
                          shift=4)

    def _draw_cylinder(self, image: np.ndarray, labels: np.ndarray, cam_from_pat: np.ndarray,
                       start: np.ndarray, end: np.ndarray, radius_mm: float, material: str,
                       in_wound: bool = False, label: int = 1) -> None:
        """A shaded cylinder; ``in_wound``: only where the opening shows (below the skin)."""
        axis = end - start
        length = float(np.linalg.norm(axis))
        if length < 1e-6:
            return
        axis = axis / length
        u, v = _perpendicular_basis(axis)
        angles = np.linspace(0.0, 2 * np.pi, 24, endpoint=False)
        ring = np.cos(angles)[:, None] * u + np.sin(angles)[:, None] * v
        pts = np.vstack([start + radius_mm * ring, end + radius_mm * ring])
        cam = pts @ cam_from_pat[:3, :3].T + cam_from_pat[:3, 3]
        if np.any(cam[:, 2] < 10.0):
            return
        pix = self._project(cam_from_pat, pts)
        hull = cv2.convexHull(pix.astype(np.float32)).reshape(-1, 2)
        x0, y0 = np.floor(hull.min(axis=0)).astype(int) - 1
        x1, y1 = np.ceil(hull.max(axis=0)).astype(int) + 2
        width, height = self.image_size
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
        if x1 <= x0 or y1 <= y0:
            return
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillConvexPoly(mask, np.round((hull - (x0, y0)) * 16).astype(np.int32), 255,
                           lineType=cv2.LINE_AA, shift=4)
        ends = self._project(cam_from_pat, np.array([start, end]))
        direction = ends[1] - ends[0]
        norm = np.linalg.norm(direction)
        side = np.array([-direction[1], direction[0]]) / norm if norm > 1e-6 else \
            np.array([1.0, 0.0])
        half_width = max(float(np.max(np.abs((hull - ends[0]) @ side))), 1.0)
        strip = self._strips[material]
        # ROI pixel -> strip column: across the projected axis, -1..1 -> 0..n-1
        n = strip.shape[1]
        k = 0.5 * (n - 1) / half_width
        m = np.array([[side[0] * k, side[1] * k,
                       0.5 * (n - 1) + k * ((x0 - ends[0][0]) * side[0]
                                            + (y0 - ends[0][1]) * side[1])],
                      [0.0, 0.0, 0.0]], np.float64)
        shaded = cv2.warpAffine(strip, m, (x1 - x0, y1 - y0),
                                flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                borderMode=cv2.BORDER_REPLICATE)
        roi = image[y0:y1, x0:x1]
        alpha = mask.astype(np.float32) / 255.0
        shaded = self._lit(shaded, y0, y1, x0, x1)
        if in_wound:
            alpha *= self._opening_alpha(y0, y1, x0, x1)
            shaded = cv2.multiply(shaded, np.full(3, 0.7), dtype=cv2.CV_8U)  # in the shade
        roi[:] = cv2.blendLinear(shaded, roi, alpha, 1.0 - alpha)
        labels[y0:y1, x0:x1][alpha > 0.5] = label

    def _draw_plate(self, image: np.ndarray, labels: np.ndarray, name: str,
                    camera_from_tool: np.ndarray, label: int) -> list[np.ndarray]:
        """Draw a marker plate exactly (see the module docstring); returns the markers'
        pixel quads (distorted)."""
        plate = self._plates[name]
        tool = self.tools[name]
        corners = plate.corners_mm
        cam = corners @ camera_from_tool[:3, :3].T + camera_from_tool[:3, 3]
        if np.any(cam[:, 2] < 10.0):
            return []
        facing = float(camera_from_tool[:3, :3] @ plate.normal @ (-cam.mean(axis=0)))
        if facing <= 0:                                   # seen from the back
            return []
        # plastic edge and backing: the hull of the front and back faces, grown by 1 mm
        centre = corners.mean(axis=0)
        grown = centre + (corners - centre) * (1.0 + 2.0 / np.ptp(corners, axis=0).max())
        back = grown - 4.4 * plate.normal
        edge = self._project(camera_from_tool, np.vstack([grown, back]))
        hull = cv2.convexHull(edge.astype(np.float32)).reshape(-1, 2)
        cv2.fillConvexPoly(image, np.round(hull * 16).astype(np.int32),
                           self._lit_colour((92, 96, 102), hull.mean(axis=0)),
                           lineType=cv2.LINE_AA, shift=4)
        cv2.fillConvexPoly(labels, np.round(hull).astype(np.int32), label)
        pix = self._project(camera_from_tool, corners)
        width, height = self.image_size
        x0, y0 = np.floor(pix.min(axis=0)).astype(int) - 3
        x1, y1 = np.ceil(pix.max(axis=0)).astype(int) + 4
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
        if x1 <= x0 or y1 <= y0:
            return []
        # mip level: about one texel per pixel at the plate's distance
        px_per_texel = self.camera_matrix[0, 0] / (plate.texels_per_mm * float(cam[:, 2].mean()))
        level = int(np.clip(np.round(np.log2(1.0 / px_per_texel)), 0, _MIP_LEVELS - 1))
        scale = 2.0 ** level
        # normalised camera coords -> level-0 texel (homography) -> texel of the level
        to_level = np.array([[1.0 / scale, 0.0, 0.5 / scale - 0.5],
                             [0.0, 1.0 / scale, 0.5 / scale - 0.5], [0.0, 0.0, 1.0]])
        camera_from_texel = camera_from_tool[:3, :] @ plate.tool_from_texel   # (3, 3)
        level_from_camera = to_level @ np.linalg.inv(camera_from_texel)
        maps = cv2.perspectiveTransform(self._rays_full[y0:y1, x0:x1], level_from_camera)
        texture = plate.levels[level]
        th, tw = texture.shape
        valid = cv2.inRange(maps, (-0.5, -0.5), (tw - 0.5, th - 0.5))
        grey = cv2.remap(texture, maps, None, cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)
        roi = image[y0:y1, x0:x1]
        cv2.copyTo(self._lit(cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR), y0, y1, x0, x1), valid,
                   roi)
        cv2.copyTo(np.full(valid.shape, label, np.uint8), valid, labels[y0:y1, x0:x1])
        return [self._project(camera_from_tool, m.corners_mm) for m in tool.markers]

    def _draw_hand(self, image: np.ndarray, labels: np.ndarray, cam_from_pat: np.ndarray,
                   hand: HandPose, label: int) -> None:
        cam_from_hand = cam_from_pat @ as_transform(hand.patient_from_hand,
                                                    name="patient_from_hand")
        if cam_from_hand[2, 3] < 60.0:
            return
        spread = float(np.clip(hand.spread, 0.0, 1.0))
        # capsules in the hand frame (mm): (start, end, radius)
        fingers = []
        for k, (x, length, r) in enumerate(((-27.0, 68.0, 9.0), (-9.0, 78.0, 9.5),
                                            (9.0, 75.0, 9.5), (26.0, 60.0, 8.5))):
            ang = np.radians((k - 1.5) * 7.0 * (0.5 + spread))
            start = np.array([x, 30.0, 0.0])
            fingers.append((start, start + length * np.array([np.sin(ang), np.cos(ang), 0.0]),
                            r))
        palm = [(np.array([0.0, -18.0, 0.0]), np.array([0.0, 16.0, 0.0]), 38.0)]
        thumb = [(np.array([-30.0, -12.0, 0.0]),
                  np.array([-58.0 - 10 * spread, 32.0, -6.0]), 11.0)]
        cuff = [(np.array([0.0, -45.0, 0.0]), np.array([0.0, -190.0, 10.0]), 33.0)]
        width, height = self.image_size
        fx = self.camera_matrix[0, 0]

        def capsules_px(capsules):
            out = []
            for a, b, r in capsules:
                pts = np.array([a, b])
                cam = pts @ cam_from_hand[:3, :3].T + cam_from_hand[:3, 3]
                if np.any(cam[:, 2] < 30.0):
                    continue
                pix = self._project(cam_from_hand, pts)
                out.append((pix, r * fx / float(cam[:, 2].mean())))
            return out

        shapes = [("cuff", capsules_px(cuff)), ("glove", capsules_px(palm + thumb)),
                  ("finger", capsules_px(fingers))]
        every = [p for _, caps in shapes for p in caps]
        if not every:
            return
        pts = np.vstack([p for p, _ in every])
        pad = max(r for _, r in every) + 4
        x0, y0 = (np.floor(pts.min(axis=0) - pad)).astype(int)
        x1, y1 = (np.ceil(pts.max(axis=0) + pad)).astype(int)
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
        if x1 - x0 < 2 or y1 - y0 < 2:
            return
        roi = image[y0:y1, x0:x1]
        scale = 1.0 / 3.0                            # drawn at a third of the resolution
        small = (max(1, int((x1 - x0) * scale)), max(1, int((y1 - y0) * scale)))
        colour, cover = _shade_hand(shapes, (x0, y0), scale, small)
        colour = cv2.GaussianBlur(colour, (3, 3), 0)
        size = (x1 - x0, y1 - y0)
        colour_full = self._lit(cv2.resize(colour, size, interpolation=cv2.INTER_LINEAR),
                                y0, y1, x0, x1)
        # the enlarged mask, thresholded, has a smooth outline
        inside = cv2.compare(cv2.resize(cover, size, interpolation=cv2.INTER_LINEAR), 127,
                             cv2.CMP_GT)
        cv2.copyTo(colour_full, inside, roi)
        cv2.copyTo(np.full(inside.shape, label, np.uint8), inside, labels[y0:y1, x0:x1])

    # -- truth and imaging effects -----------------------------------------------------------
    def _occluded(self, labels: np.ndarray, plate_quads: Mapping[str, list]) -> set[int]:
        """Markers whose image region is partly owned by something drawn over them."""
        occluded = set()
        height, width = labels.shape
        for name, quads in plate_quads.items():
            own = self._labels[name]
            for marker, quad in zip(self.tools[name].markers, quads, strict=True):
                x0, y0 = np.floor(quad.min(axis=0)).astype(int)
                x1, y1 = np.ceil(quad.max(axis=0)).astype(int) + 1
                if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
                    continue
                xc0, yc0 = max(x0, 0), max(y0, 0)
                xc1, yc1 = min(x1, width), min(y1, height)
                mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
                cv2.fillConvexPoly(mask, np.round(quad - (x0, y0)).astype(np.int32), 1)
                inside = mask[yc0 - y0:yc1 - y0, xc0 - x0:xc1 - x0].astype(bool)
                covered = labels[yc0:yc1, xc0:xc1][inside] != own
                if inside.any() and covered.mean() > 0.002:
                    occluded.add(marker.marker_id)
        return occluded

    def _glare(self, image: np.ndarray, camera_from_tool: Mapping[str, np.ndarray]) -> set[int]:
        """Lamp glare washing out markers (``occluded_marker_ids`` and dropout)."""
        hidden = set()
        for pose, marker in hidden_markers(self.tools, camera_from_tool, self.effects,
                                           self.rng):
            hidden.add(marker.marker_id)
            centre = marker.corners_mm.mean(axis=0)
            grown = centre + 0.8 * (marker.corners_mm - centre)
            poly = self._project(pose, grown)
            cv2.fillConvexPoly(image, np.round(poly * 16).astype(np.int32),
                               (250, 252, 255), lineType=cv2.LINE_AA, shift=4)
        return hidden

    def _add_noise(self, image: np.ndarray) -> None:
        """Gaussian sensor noise from a bank drawn once (a random window per frame)."""
        size = image.size
        if self._noise_bank is None or self._noise_bank[0].size < 2 * size:
            noise = self.rng.standard_normal(2 * size, dtype=np.float32) * \
                np.float32(self.effects.noise_sigma)
            noise = np.round(noise)
            self._noise_bank = (np.clip(noise, 0, 255).astype(np.uint8),
                                np.clip(-noise, 0, 255).astype(np.uint8))
        offset = int(self.rng.integers(0, self._noise_bank[0].size - size + 1))
        plus = self._noise_bank[0][offset:offset + size].reshape(image.shape)
        minus = self._noise_bank[1][offset:offset + size].reshape(image.shape)
        cv2.add(image, plus, dst=image)
        cv2.subtract(image, minus, dst=image)

    def _blur(self, image: np.ndarray, camera_from_patient: np.ndarray,
              camera_from_tool: Mapping[str, np.ndarray]) -> tuple[np.ndarray, float]:
        exposure = self.effects.motion_blur_exposure
        previous = self._previous_camera_from_patient
        if exposure <= 0 or previous is None:
            return image, 0.0
        anchors = [pose[:3, 3] for pose in camera_from_tool.values()]
        points_cam = np.array(anchors) if anchors else camera_from_patient[None, :3, 3]
        pat_from_cam = invert_rigid(camera_from_patient)
        points = points_cam @ pat_from_cam[:3, :3].T + pat_from_cam[:3, 3]
        motion = self._project(camera_from_patient, points) - self._project(previous, points)
        dx, dy = exposure * np.mean(motion, axis=0)
        length = float(np.hypot(dx, dy))
        if length < 0.5:
            return image, 0.0
        return cv2.filter2D(image, -1, motion_kernel(dx, dy)), length


def _shade_hand(shapes: list, origin_px: tuple[int, int], scale: float,
                small: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Colour (BGR) and coverage (0/255) of a hand's capsules in a reduced patch.

    Each part (cuff, palm with thumb, every finger) is shaded as a lit tube from its own
    distance transform, the fingers over the palm, so their edges part them; latex sheen on
    the crests, creases across the fingers.
    """
    colour = np.zeros((small[1], small[0], 3), np.float32)
    cover = np.zeros((small[1], small[0]), np.uint8)
    x0, y0 = origin_px
    for name, caps in shapes:
        parts = [caps] if name != "finger" else [[c] for c in caps]
        base = _colour(_CUFF_BGR if name == "cuff" else _GLOVE_BGR)
        for part in parts:
            pts = np.vstack([(pix - (x0, y0)) * scale for pix, _ in part])
            radius = max(1.0, max(r * scale for _, r in part))
            bx0, by0 = np.maximum(np.floor(pts.min(axis=0) - radius - 2), 0).astype(int)
            bx1, by1 = np.minimum(np.ceil(pts.max(axis=0) + radius + 2), small).astype(int)
            if bx1 <= bx0 or by1 <= by0:
                continue
            mask = np.zeros((by1 - by0, bx1 - bx0), np.uint8)
            for pix, r in part:
                a, b = np.round(((pix - (x0, y0)) * scale - (bx0, by0)) * 16).astype(int)
                thick = max(1, round(2 * r * scale))
                cv2.line(mask, tuple(a), tuple(b), 255, thick, cv2.LINE_AA, shift=4)
            if not mask.any():
                continue
            depth = np.clip(cv2.distanceTransform((mask > 127).astype(np.uint8),
                                                  cv2.DIST_L2, 3) / radius, 0.0, 1.0)
            dome = np.sqrt(np.clip(depth * (2.0 - depth), 0.0, 1.0))
            shaded = (0.38 + 0.62 * dome)[..., None] * base
            if name != "cuff":
                shaded += (45.0 * dome ** 10)[..., None]
            if name == "finger":                       # creases across the knuckles
                (pa, pb), _r = part[0]
                for f in (0.35, 0.62):
                    c = (pa + (pb - pa) * f - (x0, y0)) * scale - (bx0, by0)
                    d = (pb - pa) / max(np.linalg.norm(pb - pa), 1e-6)
                    n = np.array([-d[1], d[0]]) * radius
                    cv2.line(shaded, tuple(np.round((c - n) * 16).astype(int)),
                             tuple(np.round((c + n) * 16).astype(int)),
                             tuple(float(v) for v in base * 0.55), 1, cv2.LINE_AA, shift=4)
            alpha = (mask.astype(np.float32) / 255.0)[..., None]
            box = colour[by0:by1, bx0:bx1]
            box[:] = box * (1.0 - alpha) + shaded * alpha
            np.maximum(cover[by0:by1, bx0:bx1], mask, out=cover[by0:by1, bx0:bx1])
    return np.clip(colour, 0, 255).astype(np.uint8), cover


class SurgeonHands:
    """Gloved hands over the field, moving on a fixed script (deterministic per seed).

    * the assistant's hand rests on the inferior retractor blade, swaying a few mm;
    * the surgeon's hand reaches over the opening every ``period_s`` (from the patient's
      left, at a height drawn per pass between 50 and 170 mm above the skin) and withdraws,
      ``0.3 * period_s`` in all, hiding markers on its way.

    Parameters
    ----------
    layout : FieldLayout
    rng : numpy.random.Generator
        Draws the pass heights and positions once.
    period_s : float
        Time between the surgeon's passes.
    start_s : float
        No pass before this time (e.g. the end of the registration); the first comes half
        a period later.
    """

    def __init__(self, layout: FieldLayout, rng: np.random.Generator, *,
                 period_s: float = 8.0, start_s: float = 0.0) -> None:
        self.layout = layout
        self.period_s = float(period_s)
        self.start_s = float(start_s)
        n = 256
        self._heights = rng.uniform(50.0, 170.0, n)
        self._reach = rng.uniform(-0.3, 0.5, (n, 2))

    def _hand(self, palm_mm: np.ndarray, fingers_dir: np.ndarray,
              spread: float) -> HandPose:
        y = _unit(fingers_dir)
        z = np.array([0.0, -1.0, 0.0])                  # back of the hand toward anterior
        z = _unit(z - y * (z @ y))
        pose = np.eye(4)
        pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = np.cross(y, z), y, z, palm_mm
        return HandPose(pose, spread)

    def at(self, t_s: float) -> tuple[HandPose, ...]:
        """The hands in the scene at time ``t_s``."""
        c = self.layout.opening_centre_mm
        rx, rz = self.layout.opening_semi_axes_mm
        sway = np.array([4.0 * np.sin(1.3 * t_s), -2.0 * np.sin(0.7 * t_s),
                         3.0 * np.cos(0.9 * t_s)])
        rest = c + np.array([0.0, -28.0, -rz - 70.0]) + sway
        hands = [self._hand(rest, np.array([0.05, 0.15, 1.0]), 0.3)]
        local = t_s - self.start_s - 0.5 * self.period_s   # the first pass half a period in
        if local >= 0 and self.period_s > 0:
            k = int(local // self.period_s) % len(self._heights)
            phase = (local % self.period_s) / self.period_s
            duration = 0.3                               # of the period: in, stay, out
            if phase < duration:
                w = phase / duration
                reach = np.sin(np.pi * w) ** 0.6         # 0 outside, 1 over the field
                target = c + np.array([rx * self._reach[k, 0], -self._heights[k],
                                       rz * self._reach[k, 1]])
                outside = c + np.array([rx + 330.0, -self._heights[k] * 0.6, -40.0])
                palm = outside + (target - outside) * reach
                hands.append(self._hand(palm, np.array([-1.0, 0.1, 0.25]), 0.6))
        return tuple(hands)
