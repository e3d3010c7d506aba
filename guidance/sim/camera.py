"""Simulated camera: the surgical field and the tracked tools rendered with known truth.

Renders, offscreen with pyvista/VTK, a list of meshes in patient LPS (skin, cavity, organs;
passed in by the caller) and the tools (reference plate, pointer, applicator, retractor) with their
ArUco marker textures at known poses, from a camera with known intrinsics
(:mod:`guidance.render.vtk_camera`, exact to 0.01 px). Then applies, in this order, the imaging
effects of a real camera: hand occlusion and marker dropout, motion blur, lens distortion
(OpenCV model), lighting (gain, vignetting), sensor noise. Every random draw comes from the
``np.random.Generator`` given to the camera, so a run is repeatable.

Each call returns the image (BGR uint8, as ``cv2.VideoCapture`` gives) and the ground
truth: ``camera_from_patient`` and ``camera_from_tool`` for every tool.

Rendering uses no anti-aliasing (MSAA off) and a fixed window size, so the images are the
same on every run of the same machine; the marker textures are mip-mapped so their edges
stay smooth.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
import pyvista as pv

from guidance.render.vtk_camera import apply_to_vtk_camera
from guidance.tracking.tools import ToolDefinition, check_tool_set
from models.base.errors import InputError
from models.base.transforms import invert_rigid
from models.base.validation import as_array, as_transform

log = logging.getLogger(__name__)

#: Texture resolution of the marker plates (texels per mm).
_TEXELS_PER_MM = 12.0
#: White margin around the outermost markers of a plate, in marker-size fractions.
_PLATE_MARGIN = 0.2
_HAND_BGR = (120, 150, 215)  # gloved hand / skin tone in BGR


@dataclass(frozen=True)
class SceneMesh:
    """One anatomical surface to render, in patient LPS mm.

    Attributes
    ----------
    mesh : pyvista.PolyData
        Surface in patient LPS, mm.
    color_rgb : (int, int, int)
        0–255 colour.
    opacity : float
        1 = opaque.
    """

    mesh: pv.PolyData
    color_rgb: tuple[int, int, int]
    opacity: float = 1.0


@dataclass(frozen=True)
class SimEffects:
    """Imaging effects of the simulated camera (all off = an ideal pinhole image).

    Attributes
    ----------
    noise_sigma : float
        Gaussian sensor noise, standard deviation in 8-bit grey levels.
    brightness_jitter : float
        Relative standard deviation of a global gain drawn per frame (lighting flicker).
    vignetting : float
        Relative brightness loss at the image corners (0 = none).
    motion_blur_exposure : float
        Fraction of the frame interval the shutter is open; the blur length is that fraction
        of the image motion since the previous frame (0 = no blur).
    marker_dropout_prob : float
        Probability, per marker and frame, that the marker is hidden (glare, fluid, hand).
    hand_prob : float
        Probability per frame that a hand-sized blob covers a random part of the field.
    occluded_marker_ids : tuple of int
        Markers hidden in every frame (systematic occlusion tests).
    """

    noise_sigma: float = 2.0
    brightness_jitter: float = 0.03
    vignetting: float = 0.15
    motion_blur_exposure: float = 0.0
    marker_dropout_prob: float = 0.0
    hand_prob: float = 0.0
    occluded_marker_ids: tuple[int, ...] = ()

    @classmethod
    def ideal(cls) -> SimEffects:
        """No noise, no lighting change, no blur, no occlusion."""
        return cls(noise_sigma=0.0, brightness_jitter=0.0, vignetting=0.0)


@dataclass(frozen=True)
class SimTruth:
    """Ground truth of one simulated frame.

    Attributes
    ----------
    camera_from_patient : (4, 4) array
    camera_from_tool : dict name -> (4, 4) array
        Only tools that were placed in the scene.
    occluded_marker_ids : tuple of int
        Markers hidden by dropout, hands or ``occluded_marker_ids``.
    blur_px : float
        Motion-blur length applied (px).
    """

    camera_from_patient: np.ndarray
    camera_from_tool: dict[str, np.ndarray]
    occluded_marker_ids: tuple[int, ...] = ()
    blur_px: float = 0.0


@dataclass(frozen=True)
class SimulatedImage:
    """One rendered image with its ground truth."""

    image: np.ndarray
    truth: SimTruth


@dataclass(frozen=True)
class PlateTexture:
    """The printed face of a planar tool: all its markers on a white plate.

    Attributes
    ----------
    image : (H, W) uint8 array
        Grey texture; row 0 is the plate's top edge (``v = v_range_mm[1]``).
    origin_mm : (3,) array
        Tool-frame point of ``u = v = 0`` (the first marker's first corner).
    ex, ey, normal : (3,) arrays
        Unit axes of the plate in the tool frame (``u`` along ``ex``, ``v`` along ``ey``,
        the normal toward the viewer).
    u_range_mm, v_range_mm : (float, float)
        Extent of the texture in plate coordinates (mm), margin included.
    texels_per_mm : float
        Texture resolution.
    """

    image: np.ndarray
    origin_mm: np.ndarray
    ex: np.ndarray
    ey: np.ndarray
    normal: np.ndarray
    u_range_mm: tuple[float, float]
    v_range_mm: tuple[float, float]
    texels_per_mm: float

    def corners_mm(self) -> np.ndarray:
        """(4, 3) tool-frame corners of the texture: (u0, v0), (u1, v0), (u1, v1), (u0, v1)."""
        (u0, u1), (v0, v1) = self.u_range_mm, self.v_range_mm
        return np.array([self.origin_mm + u * self.ex + v * self.ey
                         for u, v in ((u0, v0), (u1, v0), (u1, v1), (u0, v1))])

    def tool_from_texel(self) -> np.ndarray:
        """(4, 3) matrix taking texel ``(col, row, 1)`` (pixel centres at integers, OpenCV
        convention) to the tool-frame point (mm, homogeneous ``(x, y, z, 1)``)."""
        (u0, _), (_, v1) = self.u_range_mm, self.v_range_mm
        step = 1.0 / self.texels_per_mm
        out = np.zeros((4, 3))
        out[:3, 0] = self.ex * step
        out[:3, 1] = -self.ey * step
        out[:3, 2] = self.origin_mm + (u0 + 0.5 * step) * self.ex + (v1 - 0.5 * step) * self.ey
        out[3, 2] = 1.0
        return out


def plate_texture(tool: ToolDefinition, texels_per_mm: float = _TEXELS_PER_MM) -> PlateTexture:
    """The marker plate of a planar tool as a texture (markers drawn by exact homographies).

    Raises
    ------
    InputError
        The tool is not planar.
    """
    if not tool.is_planar:
        raise InputError(f"tool {tool.name!r}: the simulated camera renders planar marker "
                         "plates only")
    first = tool.markers[0].corners_mm
    ex = first[1] - first[0]
    ex /= np.linalg.norm(ex)
    ey = first[0] - first[3]
    ey -= ex * (ey @ ex)
    ey /= np.linalg.norm(ey)
    normal = np.cross(ex, ey)
    origin = first[0]
    pts = tool.object_points()
    uv = np.c_[(pts - origin) @ ex, (pts - origin) @ ey]
    margin = _PLATE_MARGIN * max(m.size_mm for m in tool.markers)
    u0, v0 = uv.min(axis=0) - margin
    u1, v1 = uv.max(axis=0) + margin
    width_px = round((u1 - u0) * texels_per_mm)
    height_px = round((v1 - v0) * texels_per_mm)
    u1 = u0 + width_px / texels_per_mm   # whole texels: the texel grid is exact
    v0 = v1 - height_px / texels_per_mm
    plate = np.full((height_px, width_px), 255, np.uint8)
    aruco_dict = tool.aruco_dictionary()
    cells = aruco_dict.markerSize + 2
    for marker in tool.markers:
        cell_px = max(4, round(marker.size_mm / cells * texels_per_mm))
        side = cell_px * cells
        image = cv2.aruco.generateImageMarker(aruco_dict, marker.marker_id, side, borderBits=1)
        src = np.array([[0, 0], [side, 0], [side, side], [0, side]], np.float32) - 0.5
        muv = np.c_[(marker.corners_mm - origin) @ ex, (marker.corners_mm - origin) @ ey]
        dst = np.c_[(muv[:, 0] - u0) * texels_per_mm, (v1 - muv[:, 1]) * texels_per_mm] - 0.5
        homography = cv2.getPerspectiveTransform(src, dst.astype(np.float32))
        mask = cv2.warpPerspective(np.full_like(image, 255), homography, (width_px, height_px),
                                   flags=cv2.INTER_LINEAR, borderValue=0)
        warped = cv2.warpPerspective(image, homography, (width_px, height_px),
                                     flags=cv2.INTER_LINEAR, borderValue=255)
        alpha = mask.astype(np.float32) / 255.0
        plate = (plate * (1 - alpha) + warped * alpha).astype(np.uint8)
    return PlateTexture(image=plate, origin_mm=origin, ex=ex, ey=ey, normal=normal,
                        u_range_mm=(float(u0), float(u1)), v_range_mm=(float(v0), float(v1)),
                        texels_per_mm=float(texels_per_mm))


@dataclass
class _PlateGeometry:
    quad: pv.PolyData
    texture: pv.Texture
    backing: pv.PolyData


def _plate_geometry(tool: ToolDefinition) -> _PlateGeometry:
    """A textured quad holding all markers of a planar tool, and a grey backing box."""
    tex = plate_texture(tool)
    (u0, u1), (v0, v1) = tex.u_range_mm, tex.v_range_mm
    ex, ey, normal = tex.ex, tex.ey, tex.normal
    quad = pv.PolyData(tex.corners_mm(), faces=np.array([4, 0, 1, 2, 3]))
    quad.active_texture_coordinates = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    # pyvista puts image row 0 at texture t = 1 (the top edge v1), as the plate is drawn
    texture = pv.Texture(np.ascontiguousarray(np.repeat(tex.image[:, :, None], 3, axis=2)))
    texture.interpolate = True
    texture.mipmap = True
    texture.maximum_anisotropic_filtering = 8
    centre = tex.origin_mm + 0.5 * (u0 + u1) * ex + 0.5 * (v0 + v1) * ey - 2.5 * normal
    backing = pv.Box(bounds=(-0.5 * (u1 - u0), 0.5 * (u1 - u0), -0.5 * (v1 - v0),
                             0.5 * (v1 - v0), -2.2, 2.2))
    rot = np.eye(4)
    rot[:3, 0], rot[:3, 1], rot[:3, 2], rot[:3, 3] = ex, ey, normal, centre
    backing = backing.transform(rot, inplace=False)
    return _PlateGeometry(quad=quad, texture=texture, backing=backing)


def _tool_body(tool: ToolDefinition, applicator_diameter_mm: float,
               plate_centre: np.ndarray) -> pv.PolyData | None:
    """Shaft of the pointer or tube of the applicator, in the tool frame."""
    if tool.tip_mm is not None:
        tip = tool.tip_mm
        direction = tip - plate_centre
        length = float(np.linalg.norm(direction))
        return pv.Cylinder(center=plate_centre + direction / 2, direction=direction,
                           radius=3.0, height=length, resolution=24)
    if tool.tool_from_applicator is not None:
        tfa = tool.tool_from_applicator
        end_face = tfa[:3, 3]
        axis_up = -tfa[:3, 2]  # from the end face back toward the plate
        length = float(np.linalg.norm(plate_centre - end_face)) - 3.0
        return pv.Cylinder(center=end_face + axis_up * length / 2, direction=axis_up,
                           radius=applicator_diameter_mm / 2, height=length, resolution=48)
    return None


def _hand_mask(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A random hand-sized blob (bool mask) over the image."""
    height, width = shape
    mask = np.zeros(shape, np.uint8)
    centre = (int(rng.uniform(0.1, 0.9) * width), int(rng.uniform(0.1, 0.9) * height))
    axes = (int(rng.uniform(0.08, 0.15) * width), int(rng.uniform(0.1, 0.2) * height))
    cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    return mask.astype(bool)


def hidden_markers(tools: Mapping[str, ToolDefinition],
                   camera_from_tool: Mapping[str, np.ndarray], effects: SimEffects,
                   rng: np.random.Generator):
    """Yield ``(camera_from_tool, marker)`` of every marker the effects hide in this frame
    (listed in ``occluded_marker_ids``, or dropped with ``marker_dropout_prob``; one draw
    of ``rng`` per marker when dropout is on)."""
    for name, pose in camera_from_tool.items():
        for marker in tools[name].markers:
            hide = marker.marker_id in effects.occluded_marker_ids
            if effects.marker_dropout_prob > 0:
                hide = bool(rng.random() < effects.marker_dropout_prob) or hide
            if hide:
                yield pose, marker


def distortion_maps(camera_matrix: np.ndarray, dist_coeffs: np.ndarray,
                    image_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """``cv2.remap`` maps that turn an ideal pinhole image into a distorted one.

    For every pixel of the distorted output, its undistorted position
    (``cv2.undistortPoints`` iterated to 1e-6) is where the ideal image is sampled.
    """
    width, height = image_size
    u, v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    pts = np.c_[u.ravel(), v.ravel()].reshape(-1, 1, 2)
    criteria = (cv2.TERM_CRITERIA_COUNT + cv2.TERM_CRITERIA_EPS, 40, 1e-6)
    ideal = cv2.undistortPoints(pts, camera_matrix, dist_coeffs, R=None, P=camera_matrix,
                                criteria=criteria)
    ideal = ideal.reshape(height, width, 2).astype(np.float32)
    return ideal[..., 0], ideal[..., 1]


def motion_kernel(dx: float, dy: float) -> np.ndarray:
    """Line kernel (odd square, sums to 1) of a motion blur ``(dx, dy)`` px long."""
    length = float(np.hypot(dx, dy))
    size = int(np.ceil(length)) | 1
    kernel = np.zeros((size, size), np.float32)
    centre = size // 2
    n = max(2, int(np.ceil(length * 2)))
    for s in np.linspace(-0.5, 0.5, n):
        kernel[round(centre + s * dy), round(centre + s * dx)] += 1.0
    return kernel / kernel.sum()


class SimulatedCamera:
    """Offscreen renderer of the surgical field with tracked tools and known truth.

    Parameters
    ----------
    meshes : sequence of SceneMesh
        Anatomy in patient LPS mm (e.g. ``case.mesh("BODY")``, the cavity, organs).
    tools : mapping name -> ToolDefinition or sequence of ToolDefinition
        Tools that can appear; place them per frame with ``patient_from_tool``.
    camera_matrix : (3, 3) array
        Intrinsics in pixels.
    image_size : (int, int)
        ``(width, height)``; default 1280 x 720.
    dist_coeffs : array, optional
        OpenCV distortion coefficients applied to the rendered image (None = none).
    effects : SimEffects
        Noise, lighting, blur, occlusion.
    rng : numpy.random.Generator, optional
        Source of every random draw; default ``np.random.default_rng(0)``.
    applicator_diameter_mm : float
        Diameter of the rendered applicator tube.
    background_rgb : (int, int, int)
        Colour behind the scene (drapes).

    Examples
    --------
    >>> import pyvista as pv
    >>> from guidance.tracking.tools import load_builtin_tools
    >>> k = np.array([[1000.0, 0, 639.5], [0, 1000.0, 359.5], [0, 0, 1]])
    >>> skin = SceneMesh(pv.Plane(i_size=400, j_size=400, direction=(0, 1, 0)), (220, 180, 160))
    >>> camera_from_patient = np.array([[1.0, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 500],
    ...                                 [0, 0, 0, 1]])  # 500 mm in front of the skin
    >>> with SimulatedCamera([skin], load_builtin_tools(), k) as cam:
    ...     shot = cam.render(camera_from_patient, {})
    >>> shot.image.shape, bool(shot.image[360, 640, 2] > 150)  # BGR; skin at the centre
    ((720, 1280, 3), True)
    """

    def __init__(self, meshes: Sequence[SceneMesh],
                 tools: Mapping[str, ToolDefinition] | Sequence[ToolDefinition],
                 camera_matrix: np.ndarray, *, image_size: tuple[int, int] = (1280, 720),
                 dist_coeffs: np.ndarray | None = None, effects: SimEffects | None = None,
                 rng: np.random.Generator | None = None, applicator_diameter_mm: float = 60.0,
                 background_rgb: tuple[int, int, int] = (40, 90, 80)) -> None:
        self.camera_matrix = as_array(camera_matrix, name="camera_matrix", shape=(3, 3))
        width, height = (int(v) for v in image_size)
        if width <= 0 or height <= 0:
            raise InputError(f"image_size must be positive (width, height), got {image_size}")
        self.image_size = (width, height)
        values = tools.values() if isinstance(tools, Mapping) else tools
        self.tools = check_tool_set(values)
        self.effects = effects if effects is not None else SimEffects()
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.dist_coeffs = (None if dist_coeffs is None
                            else as_array(dist_coeffs, name="dist_coeffs").ravel())
        self._maps = None
        if self.dist_coeffs is not None and np.any(self.dist_coeffs != 0):
            map_x, map_y = distortion_maps(self.camera_matrix, self.dist_coeffs, self.image_size)
            # fixed-point maps: remap twice as fast, 1/32 px interpolation steps
            self._maps = cv2.convertMaps(map_x, map_y, cv2.CV_16SC2)
        self._vignette = self._vignette_gain()
        self._previous_camera_from_patient: np.ndarray | None = None
        self._noise_bank: np.ndarray | None = None
        self._plates: dict[str, _PlateGeometry] = {}
        self._tool_actors: dict[str, list] = {}

        for item in meshes:
            if not isinstance(item, SceneMesh):
                raise TypeError(f"meshes must be SceneMesh items, got {type(item).__name__}")
        self._plotter = pv.Plotter(off_screen=True, window_size=list(self.image_size),
                                   lighting="none")
        self._plotter.disable_anti_aliasing()
        self._plotter.set_background([c / 255 for c in background_rgb])
        self._plotter.add_light(pv.Light(light_type="headlight", intensity=0.9))
        for item in meshes:
            self._plotter.add_mesh(item.mesh, color=[c / 255 for c in item.color_rgb],
                                   opacity=item.opacity, smooth_shading=True, ambient=0.25,
                                   diffuse=0.75, specular=0.1)
        for name, tool in self.tools.items():
            plate = _plate_geometry(tool)
            self._plates[name] = plate
            actors = [self._plotter.add_mesh(plate.quad, texture=plate.texture, ambient=0.35,
                                             diffuse=0.65, specular=0.0, culling="back"),
                      self._plotter.add_mesh(plate.backing, color=(0.55, 0.57, 0.6))]
            body = _tool_body(tool, applicator_diameter_mm,
                              plate.backing.center)
            if body is not None:
                actors.append(self._plotter.add_mesh(body, color=(0.75, 0.77, 0.8),
                                                     specular=0.4, smooth_shading=True))
            for actor in actors:
                actor.visibility = False
            self._tool_actors[name] = actors

    # -- life cycle ---------------------------------------------------------------------
    def close(self) -> None:
        """Release the render window."""
        if self._plotter is not None:
            self._plotter.close()
            self._plotter = None

    def __enter__(self) -> SimulatedCamera:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- rendering ----------------------------------------------------------------------
    def _vignette_gain(self) -> np.ndarray:
        width, height = self.image_size
        u = (np.arange(width) - (width - 1) / 2) / (width / 2)
        v = (np.arange(height) - (height - 1) / 2) / (height / 2)
        r2 = (u[None, :] ** 2 + v[:, None] ** 2) / 2.0
        return (1.0 - self.effects.vignetting * r2).astype(np.float32)[..., None]

    def project(self, camera_from_frame: np.ndarray, points_mm: np.ndarray) -> np.ndarray:
        """Pixels (N, 2) of points given in some frame, with this camera's distortion."""
        pts = as_array(points_mm, name="points_mm", shape=(None, 3))
        m = as_transform(camera_from_frame, name="camera_from_frame")
        rvec = cv2.Rodrigues(m[:3, :3])[0]
        dist = np.zeros(5) if self.dist_coeffs is None else self.dist_coeffs
        proj, _ = cv2.projectPoints(pts, rvec, m[:3, 3], self.camera_matrix, dist)
        return proj.reshape(-1, 2)

    def render(self, camera_from_patient: np.ndarray,
               patient_from_tool: Mapping[str, np.ndarray]) -> SimulatedImage:
        """Render one frame.

        Parameters
        ----------
        camera_from_patient : (4, 4) array
            Pose of the camera: patient LPS mm to OpenCV camera mm.
        patient_from_tool : mapping name -> (4, 4) array
            Pose of each tool in the scene; tools not listed are not drawn.

        Returns
        -------
        SimulatedImage
            BGR uint8 (H, W, 3) image and the ground truth.
        """
        if self._plotter is None:
            raise RuntimeError("SimulatedCamera is closed")
        cam_from_pat = as_transform(camera_from_patient, name="camera_from_patient", rigid=True)
        truth_tools: dict[str, np.ndarray] = {}
        for name, actors in self._tool_actors.items():
            pose = patient_from_tool.get(name)
            for actor in actors:
                actor.visibility = pose is not None
                if pose is not None:
                    actor.user_matrix = as_transform(pose, name=f"patient_from_tool[{name}]",
                                                     rigid=True)
            if pose is not None:
                truth_tools[name] = cam_from_pat @ np.asarray(pose, dtype=np.float64)
        unknown = set(patient_from_tool) - set(self._tool_actors)
        if unknown:
            raise InputError(f"patient_from_tool names unknown tools {sorted(unknown)}; "
                             f"known: {sorted(self._tool_actors)}")
        apply_to_vtk_camera(self._plotter.camera, self.camera_matrix, self.image_size,
                            cam_from_pat, clipping_range_mm=(20.0, 3000.0))
        self._plotter.render()
        rgb = self._plotter.screenshot(return_img=True)
        image = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        image, occluded = self._occlude(image, truth_tools)
        image, blur_px = self._blur(image, cam_from_pat, truth_tools)
        if self._maps is not None:
            image = cv2.remap(image, self._maps[0], self._maps[1], cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)
        # lighting and noise work on one float32 copy, converted back to uint8 once
        image = self._light(image)
        if self.effects.noise_sigma > 0:
            if image.dtype == np.uint8:
                image = image.astype(np.float32)
            image += self._noise(image.shape)
        if image.dtype != np.uint8:
            image += 0.5
            np.clip(image, 0, 255, out=image)
            image = image.astype(np.uint8)
        self._previous_camera_from_patient = cam_from_pat
        truth = SimTruth(camera_from_patient=cam_from_pat, camera_from_tool=truth_tools,
                         occluded_marker_ids=occluded, blur_px=blur_px)
        return SimulatedImage(image=image, truth=truth)

    def _ideal_project(self, camera_from_frame: np.ndarray, points: np.ndarray) -> np.ndarray:
        pts = points @ camera_from_frame[:3, :3].T + camera_from_frame[:3, 3]
        uvw = pts @ self.camera_matrix.T
        return uvw[:, :2] / uvw[:, 2:3]

    def _occlude(self, image: np.ndarray, camera_from_tool: Mapping[str, np.ndarray]
                 ) -> tuple[np.ndarray, tuple[int, ...]]:
        eff = self.effects
        occluded = []
        for pose, marker in hidden_markers(self.tools, camera_from_tool, eff, self.rng):
            occluded.append(marker.marker_id)
            centre = marker.corners_mm.mean(axis=0)
            grown = centre + 1.15 * (marker.corners_mm - centre)
            poly = self._ideal_project(pose, grown)
            if np.all(np.isfinite(poly)):
                cv2.fillConvexPoly(image, np.round(poly).astype(np.int32), _HAND_BGR)
        if eff.hand_prob > 0 and self.rng.random() < eff.hand_prob:
            mask = _hand_mask(image.shape[:2], self.rng)
            image[mask] = _HAND_BGR
        return image, tuple(sorted(occluded))

    def _noise(self, shape: tuple[int, ...]) -> np.ndarray:
        """Gaussian sensor noise: a window at a random offset into a bank drawn once.

        Drawing 2.7 M normals per 720p frame cost ~30 ms; a random window of a bank twice
        the frame size gives independent-looking noise per frame for the cost of a slice.
        """
        size = int(np.prod(shape))
        if self._noise_bank is None or self._noise_bank.size < 2 * size:
            self._noise_bank = self.rng.standard_normal(2 * size, dtype=np.float32)
            self._noise_bank *= np.float32(self.effects.noise_sigma)
        offset = int(self.rng.integers(0, self._noise_bank.size - size + 1))
        return self._noise_bank[offset:offset + size].reshape(shape)

    def _light(self, image: np.ndarray) -> np.ndarray:
        """Global gain (flicker) and vignetting; float32 out when anything changes."""
        eff = self.effects
        gain = 1.0
        if eff.brightness_jitter > 0:
            gain = float(np.clip(1.0 + self.rng.normal(0.0, eff.brightness_jitter), 0.3, 2.0))
        if gain == 1.0 and eff.vignetting == 0:
            return image
        lit = image.astype(np.float32)
        lit *= self._vignette if gain == 1.0 else self._vignette * np.float32(gain)
        return lit

    def _blur(self, image: np.ndarray, camera_from_patient: np.ndarray,
              camera_from_tool: Mapping[str, np.ndarray]) -> tuple[np.ndarray, float]:
        exposure = self.effects.motion_blur_exposure
        previous = self._previous_camera_from_patient
        if exposure <= 0 or previous is None:
            return image, 0.0
        # image motion of the tools (or the patient origin) since the previous frame
        anchors = [pose[:3, 3] for pose in camera_from_tool.values()]
        points_cam = np.array(anchors) if anchors else camera_from_patient[None, :3, 3]
        patient_from_camera = invert_rigid(camera_from_patient)
        points_patient = points_cam @ patient_from_camera[:3, :3].T + patient_from_camera[:3, 3]
        now = self._ideal_project(camera_from_patient, points_patient)
        before = self._ideal_project(previous, points_patient)
        dx, dy = exposure * np.mean(now - before, axis=0)
        length = float(np.hypot(dx, dy))
        if length < 0.5:
            return image, 0.0
        return cv2.filter2D(image, -1, motion_kernel(dx, dy)), length


def look_at(eye_mm: np.ndarray, target_mm: np.ndarray,
            up_hint: np.ndarray = (0.0, 0.0, 1.0)) -> np.ndarray:
    """``frame_from_camera`` of a camera at ``eye`` looking at ``target`` (both in one frame).

    The camera's -y (image up) is as close to ``up_hint`` as possible. Invert it for
    ``camera_from_frame``.
    """
    eye = as_array(eye_mm, name="eye_mm", shape=(3,))
    target = as_array(target_mm, name="target_mm", shape=(3,))
    z = target - eye
    z /= np.linalg.norm(z)
    up = as_array(up_hint, name="up_hint", shape=(3,))
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-9:
        x = np.cross(z, [1.0, 0.0, 0.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    out = np.eye(4)
    out[:3, 0], out[:3, 1], out[:3, 2], out[:3, 3] = x, y, z, eye
    return out


def facing_pose(position_mm: np.ndarray, toward_mm: np.ndarray, *, roll_deg: float = 0.0,
                up_hint: np.ndarray = (0.0, 0.0, 1.0)) -> np.ndarray:
    """``frame_from_tool`` of a marker plate at ``position`` whose normal (+z) faces ``toward``.

    The tool's +y points as close to ``up_hint`` as possible, then the plate is rolled
    ``roll_deg`` about its normal.
    """
    pos = as_array(position_mm, name="position_mm", shape=(3,))
    zt = as_array(toward_mm, name="toward_mm", shape=(3,)) - pos
    zt /= np.linalg.norm(zt)
    up = as_array(up_hint, name="up_hint", shape=(3,))
    yt = up - zt * (up @ zt)
    if np.linalg.norm(yt) < 1e-9:
        yt = np.cross(zt, [1.0, 0.0, 0.0])
    yt /= np.linalg.norm(yt)
    xt = np.cross(yt, zt)
    rot = np.c_[xt, yt, zt]
    angle = np.radians(roll_deg)
    roll = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0],
                     [0, 0, 1]])
    out = np.eye(4)
    out[:3, :3] = rot @ roll
    out[:3, 3] = pos
    return out


def pointer_touching(tool: ToolDefinition, point_mm: np.ndarray, camera_position_mm: np.ndarray,
                     *, lean_toward_mm: np.ndarray | None = None,
                     up_hint: np.ndarray = (0.0, 0.0, 1.0)) -> np.ndarray:
    """``frame_from_pointer`` with the tip on ``point`` and the marker plate facing the camera.

    All inputs in one frame (e.g. patient LPS mm). The plate sits on the tool's +y side of
    the tip; ``lean_toward_mm`` (e.g. the centre of the field) turns it that way so it stays
    in view, else ``up_hint`` gives the direction.
    """
    if tool.tip_mm is None:
        raise InputError(f"tool {tool.name!r} has no tip_mm")
    point = as_array(point_mm, name="point_mm", shape=(3,))
    cam = as_array(camera_position_mm, name="camera_position_mm", shape=(3,))
    if lean_toward_mm is not None:
        lean = as_array(lean_toward_mm, name="lean_toward_mm", shape=(3,)) - point
        if np.linalg.norm(lean) > 1e-6:
            up_hint = lean
    rot = facing_pose(point, cam, up_hint=up_hint)[:3, :3]
    for _ in range(5):  # the plate, not the tip, must face the camera: iterate
        origin = point - rot @ tool.tip_mm
        rot = facing_pose(origin, cam, up_hint=up_hint)[:3, :3]
    pose = np.eye(4)
    pose[:3, :3] = rot
    pose[:3, 3] = point - rot @ tool.tip_mm
    return pose


@dataclass
class CameraPath:
    """A smooth hand-held camera motion around a look-at point (for sequences).

    The camera sits at ``distance_mm`` from ``target_mm`` in direction ``view_dir`` and
    sways with the given amplitudes at ``period_s``; its image-up points along
    ``up_hint``.
    """

    target_mm: np.ndarray
    view_dir: np.ndarray = field(default_factory=lambda: np.array([0.0, -1.0, 0.0]))
    distance_mm: float = 450.0
    sway_mm: float = 40.0
    period_s: float = 4.0
    up_hint: np.ndarray = field(default_factory=lambda: np.array([0.0, 0.0, 1.0]))

    def camera_from_frame(self, t_s: float) -> np.ndarray:
        """``camera_from_<frame of target_mm>`` at time ``t_s``."""
        target = np.asarray(self.target_mm, np.float64)
        view = np.asarray(self.view_dir, np.float64)
        view = view / np.linalg.norm(view)
        side = np.cross(view, self.up_hint)
        side /= np.linalg.norm(side)
        up = np.cross(side, view)
        phase = 2 * np.pi * t_s / self.period_s
        eye = (target + view * (self.distance_mm + 0.3 * self.sway_mm * np.sin(0.7 * phase))
               + side * self.sway_mm * np.sin(phase) + up * 0.6 * self.sway_mm * np.cos(phase))
        return invert_rigid(look_at(eye, target, self.up_hint))


def random_camera_from_tool(rng: np.random.Generator, camera_matrix: np.ndarray,
                            image_size: tuple[int, int], *,
                            distance_range_mm: tuple[float, float] = (200.0, 500.0),
                            max_tilt_deg: float = 35.0, margin_px: float = 150.0
                            ) -> np.ndarray:
    """A random tool pose in view: plate centre at a random pixel (``margin_px`` from the
    border) and distance, its normal tilted up to ``max_tilt_deg`` away from the line of
    sight toward the camera, random roll. Returns ``camera_from_tool``.
    """
    k = as_array(camera_matrix, name="camera_matrix", shape=(3, 3))
    width, height = image_size
    u = rng.uniform(margin_px, width - margin_px)
    v = rng.uniform(margin_px, height - margin_px)
    ray = np.linalg.solve(k, [u, v, 1.0])
    ray /= np.linalg.norm(ray)
    centre = ray * rng.uniform(*distance_range_mm)
    toward = -ray  # from the plate back to the camera
    tilt = np.radians(rng.uniform(0.0, max_tilt_deg))
    axis = np.cross(toward, rng.normal(size=3))
    axis /= np.linalg.norm(axis)
    normal = (toward * np.cos(tilt) + np.cross(axis, toward) * np.sin(tilt)
              + axis * (axis @ toward) * (1 - np.cos(tilt)))
    return facing_pose(centre, centre + normal * 100.0, roll_deg=float(rng.uniform(0, 360)),
                       up_hint=np.array([0.0, -1.0, 0.0]))
