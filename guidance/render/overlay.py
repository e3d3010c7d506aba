"""Offscreen augmented-reality overlay: the scene drawn over a video frame.

The scene is rendered with a VTK camera built from the calibrated intrinsics and the
tracked ``camera_from_patient`` (:mod:`guidance.render.vtk_camera`), on a transparent background,
then alpha-blended over the (undistorted) video frame, so a CT point lands on the pixel
``cv2.projectPoints`` gives. Used by ``iort demo`` and reports, and by the OR monitor's AR
view through :class:`guidance.render.ar_compositor.ArCompositor` (on its own thread); the
monitor's 3D view reuses :class:`Scene` in its Qt widget.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import cv2
import numpy as np

from guidance.render.compositing import blend_layer
from guidance.render.scene import Scene
from guidance.render.scene_actors import SceneActors
from guidance.render.vtk_camera import apply_to_vtk_camera
from models.base.errors import InputError
from models.base.validation import as_array, as_transform

log = logging.getLogger(__name__)

if not os.environ.get("DISPLAY"):
    # no X server: use EGL directly instead of VTK's X window (which warns, then falls back)
    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")

import pyvista as pv  # noqa: E402  (after choosing the render window type)

STALE_TINT = np.array([90, 90, 90], dtype=np.float32)


def live_layers(target: str) -> tuple[str, ...]:
    """Draw order of the live views' translucent items, the last on top: organs (scene
    order), then the prescription isodose, the target, the disc, the planned ghost, the
    tracked applicator and the retractor. What must never hide behind a translucent organ
    or the isodose (the target, the applicator) is drawn over them.

    Examples
    --------
    >>> live_layers("CTV")[:2]
    ('isodose', 'CTV')
    """
    return ("isodose", target, "disc", "planned_applicator", "applicator", "retractor")


@dataclass(frozen=True)
class OverlayStatus:
    """What the overlay says in its banner: tracking state and numbers with units."""

    tracking_ok: bool = True
    banner: str = ""


def scaled_camera_matrix(camera_matrix: np.ndarray, image_size: tuple[int, int],
                         new_size: tuple[int, int]) -> np.ndarray:
    """Intrinsics (px) of the same camera for an image resized from ``image_size`` to
    ``new_size`` (pixel centres: ``u' = (u + 0.5) * s - 0.5``, as ``cv2.resize`` maps them)."""
    sx, sy = new_size[0] / image_size[0], new_size[1] / image_size[1]
    k = np.array(camera_matrix, dtype=np.float64)
    return np.array([[k[0, 0] * sx, k[0, 1] * sx, (k[0, 2] + 0.5) * sx - 0.5],
                     [0.0, k[1, 1] * sy, (k[1, 2] + 0.5) * sy - 0.5],
                     [0.0, 0.0, 1.0]])


def stale_video(background_rgb: np.ndarray) -> np.ndarray:
    """The video greyed (half towards the stale tint): nothing may be drawn on it from an
    old pose."""
    # (x + tint) // 2 in integers: the same values as 0.5 x + 0.5 tint truncated, in a
    # quarter of the float32 expression's 10 ms at 720p
    video = np.asarray(background_rgb, dtype=np.uint8).astype(np.uint16)
    video += STALE_TINT.astype(np.uint16)
    video >>= 1
    return video.astype(np.uint8)


class OverlayRenderer:
    """Render a :class:`Scene` over video frames from a calibrated camera.

    Parameters
    ----------
    scene : Scene
        Meshes in patient space (the applicator with its pose).
    camera_matrix : (3, 3) array
        Intrinsics in pixels of the (undistorted) video.
    image_size : (int, int)
        ``(width, height)`` of the video frames in pixels. To render fewer pixels (a CPU
        rasteriser's time grows with them), give the size the video is shown at and the
        intrinsics for it (:func:`scaled_camera_matrix`), as the live view does.
    max_triangles : int or None
        Triangle budget per item (:data:`LIVE_MAX_TRIANGLES` for live views); ``None`` draws the
        meshes as given (reports, the demo's video).
    layers : sequence of str or None
        Live views (:func:`live_layers`): translucent items blended in this fixed order,
        the last on top (the target and the applicator always visible), without the
        order-independent transparency passes that cost the CPU rasteriser a third of the
        frame. ``None``: order-independent transparency (depth-correct mixing).

    Closed surfaces are drawn front faces only, at the opacity their two layers had (the
    same look at half the fill cost); the applicator, disc and retractor keep both sides.

    Examples
    --------
    >>> import numpy as np, pyvista as pv
    >>> from guidance.render.scene import Scene, SceneItem
    >>> scene = Scene()
    >>> scene.add(SceneItem("ball", pv.Sphere(radius=20.0), (1.0, 0.0, 0.0)))
    >>> k = np.array([[500.0, 0, 160], [0, 500.0, 120], [0, 0, 1]])
    >>> renderer = OverlayRenderer(scene, k, (320, 240))
    >>> camera_from_patient = np.eye(4); camera_from_patient[2, 3] = 300.0
    >>> frame = renderer.render(np.zeros((240, 320, 3), np.uint8), camera_from_patient)
    >>> bool(frame[120, 160, 0] > 100)
    True
    >>> renderer.close()
    """

    def __init__(self, scene: Scene, camera_matrix: np.ndarray,
                 image_size: tuple[int, int], *,
                 max_triangles: int | None = None,
                 layers: tuple[str, ...] | None = None) -> None:
        self.camera_matrix = as_array(camera_matrix, name="camera_matrix", shape=(3, 3))
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.scene = scene
        self._plotter = pv.Plotter(off_screen=True, window_size=self.image_size)
        self._plotter.disable_anti_aliasing()
        self._plotter.set_background("black")
        if layers is not None:   # plain blending in a fixed order instead of OIT passes
            self._plotter.renderer.SetUseOIT(False)
        self._actors = SceneActors(self._plotter, scene, smooth_shading=True,
                                   max_triangles=max_triangles, cull_back_faces=True,
                                   layers=layers)
        self._last_key: tuple | None = None
        self._last_layer: np.ndarray | None = None
        self._extra_version = 0
        #: Number of real renders (cached frames not counted).
        self.renders = 0
        self.sync()

    def sync(self) -> None:
        """Create, replace or remove actors so they match the scene's items."""
        self._actors.sync()

    def use_scene(self, scene: Scene) -> None:
        """Draw ``scene`` from now on (e.g. the next snapshot of a live scene): actors whose
        item keeps its mesh object are kept, the rest follow at the next render."""
        self.scene = scene
        self._actors.scene = scene

    @property
    def actors(self) -> SceneActors:
        """The scene's actors in this view (``actors.hidden``: items this view leaves out)."""
        return self._actors

    @property
    def plotter(self) -> pv.Plotter:
        """The offscreen plotter: a hook for extra view-dependent actors (e.g. organ
        silhouettes), which then follow the calibrated camera like the scene."""
        return self._plotter

    def _state_key(self, pose: np.ndarray) -> tuple:
        """What the layer depends on: camera pose, every item's mesh, look, visibility and
        pose, and the items this view hides."""
        items = tuple((name, id(item.mesh), item.mesh.n_cells, bool(item.visible),
                       tuple(item.color), float(item.opacity),
                       None if item.patient_from_item is None
                       else np.round(item.patient_from_item, 6).tobytes())
                      for name, item in self.scene.items.items())
        return (np.round(pose, 6).tobytes(), items, frozenset(self._actors.hidden),
                self._extra_version)

    def changed(self) -> None:
        """Say that something outside the scene changed (e.g. an extra actor's visibility):
        the next :meth:`render_layer` renders anew."""
        self._extra_version += 1

    def render_layer(self, camera_from_patient: np.ndarray) -> np.ndarray:
        """The scene alone as RGBA (H, W, 4) uint8, alpha 0 where nothing is drawn.

        Rendered only when the pose or the scene changed since the last call (a still
        camera over a still scene costs nothing); otherwise the last layer is returned.
        """
        pose = as_transform(camera_from_patient, name="camera_from_patient", rigid=True)
        key = self._state_key(pose)
        if key == self._last_key and self._last_layer is not None:
            return self._last_layer
        self.sync()
        apply_to_vtk_camera(self._plotter.camera, self.camera_matrix, self.image_size, pose)
        # pyvista's screenshot renders only the first time: later frames (new pose, hidden
        # items) need the render asked for (a no-op before the first screenshot)
        self._plotter.render()
        # light from the camera, like a head lamp over the surgical field
        rgba = np.asarray(self._plotter.screenshot(transparent_background=True,
                                                   return_img=True))
        rgba.setflags(write=False)   # shared by the calls until the next change
        self._last_key, self._last_layer = key, rgba
        self.renders += 1
        return rgba

    def render(self, background_rgb: np.ndarray, camera_from_patient: np.ndarray | None,
               status: OverlayStatus | None = None) -> np.ndarray:
        """Blend the scene over ``background_rgb`` (H, W, 3 uint8) and draw the banner.

        With ``status.tracking_ok`` False no anatomy is drawn from an old pose: the video is
        greyed and a red banner says why. With ``camera_from_patient=None`` (not registered
        yet) the plain video is shown with the banner.
        """
        background = np.asarray(background_rgb)
        width, height = self.image_size
        if background.shape[:2] != (height, width):
            raise InputError(f"background frame is {background.shape[1]}x{background.shape[0]},"
                             f" the overlay was set up for {width}x{height}")
        status = status or OverlayStatus()
        if not status.tracking_ok:
            out = stale_video(background)
            draw_banner(out, status.banner or "TRACKING LOST - overlay hidden", alarm=True)
            return out
        if camera_from_patient is None:  # nothing registered yet: the plain video
            out = background.copy()
            if status.banner:
                draw_banner(out, status.banner, alarm=False)
            return out
        out = blend_layer(background, self.render_layer(camera_from_patient))
        if status.banner:
            draw_banner(out, status.banner, alarm=False)
        return out

    def close(self) -> None:
        """Release the render window."""
        self._plotter.close()

    def __enter__(self) -> OverlayRenderer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def draw_banner(image_rgb: np.ndarray, text: str, *, alarm: bool) -> None:
    """Draw a banner across the top of ``image_rgb`` in place (red when ``alarm``)."""
    height, width = image_rgb.shape[:2]
    bar = max(24, height // 16)
    colour = (200, 30, 30) if alarm else (20, 20, 20)
    cv2.rectangle(image_rgb, (0, 0), (width, bar), colour, thickness=-1)
    scale = bar / 40.0
    cv2.putText(image_rgb, text, (10, int(bar * 0.72)), cv2.FONT_HERSHEY_SIMPLEX, scale,
                (255, 255, 255), max(1, int(scale * 2)), cv2.LINE_AA)
