"""Live-view meshes: decimated copies that stay close and follow in-place moves, and
translucent closed surfaces drawn as one layer."""

from __future__ import annotations

import numpy as np
import pytest
import pyvista as pv

from guidance.render.overlay import OverlayRenderer
from guidance.render.scene import LIVE_MAX_TRIANGLES, Scene, SceneItem
from guidance.render.scene_actors import SceneActors


def _max_vertex_distance_mm(a: pv.PolyData, b: pv.PolyData) -> float:
    """Largest distance (mm) of a vertex of either mesh from the other's surface."""
    d_ab = np.abs(a.compute_implicit_distance(b)["implicit_distance"]).max()
    d_ba = np.abs(b.compute_implicit_distance(a)["implicit_distance"]).max()
    return float(max(d_ab, d_ba))


def test_live_meshes_stay_within_the_stated_distance_of_the_full_ones() -> None:
    from models.patient.phantom import make_phantom

    case = make_phantom()
    scene = Scene()
    for name in ("CTV", "BOWEL", "LIVER", "SPINE"):
        scene.add(SceneItem(name, case.mesh(name, max_triangles=4000), (1.0, 1.0, 1.0)))
    plotter = pv.Plotter(off_screen=True)
    actors = SceneActors(plotter, scene, max_triangles=LIVE_MAX_TRIANGLES)
    actors.sync()
    limits_mm = {"CTV": 0.25, "BOWEL": 1.5, "LIVER": 1.0, "SPINE": 1.0}  # overlay.py's note
    for name, limit in limits_mm.items():
        shown = actors.shown_mesh(name)
        assert shown.n_cells <= LIVE_MAX_TRIANGLES < scene.items[name].mesh.n_cells
        assert _max_vertex_distance_mm(shown, scene.items[name].mesh) < limit, name
    plotter.close()


def test_a_decimated_copy_follows_its_mesh_moved_in_place() -> None:
    ball = pv.Sphere(radius=10.0, theta_resolution=80, phi_resolution=80)
    scene = Scene()
    scene.add(SceneItem("BOWEL", ball, (1.0, 0.5, 0.0)))
    plotter = pv.Plotter(off_screen=True)
    actors = SceneActors(plotter, scene, max_triangles=300)
    actors.sync()
    shown = actors.shown_mesh("BOWEL")
    assert shown is not ball and shown.n_cells <= 300
    assert shown.center[0] == pytest.approx(0.0, abs=0.1)
    ball.points = np.asarray(ball.points) + np.array([32.0, 0.0, 0.0], np.float32)  # retracted
    ball.Modified()
    actors.sync()
    assert actors.shown_mesh("BOWEL") is shown            # the same object: actor follows
    assert shown.center[0] == pytest.approx(32.0, abs=0.1)
    plotter.close()


def _centre_alpha_and_culling(name: str) -> tuple[float, bool]:
    scene = Scene()
    scene.add(SceneItem(name, pv.Sphere(radius=20.0, theta_resolution=48, phi_resolution=48),
                        (1.0, 0.0, 0.0), 0.5))
    k = np.array([[400.0, 0.0, 80.0], [0.0, 400.0, 60.0], [0.0, 0.0, 1.0]])
    pose = np.eye(4)
    pose[2, 3] = 300.0
    with OverlayRenderer(scene, k, (160, 120)) as renderer:
        layer = renderer.render_layer(pose)
        culled = bool(renderer.actors.actors[name].GetProperty().GetBackfaceCulling())
    return float(layer[60, 80, 3]) / 255.0, culled


def test_a_closed_organ_is_drawn_once_and_looks_as_two_layers_did() -> None:
    # an organ's shell: only its near side is drawn, at the opacity of the two sides seen
    # through each other (1 - 0.5 * 0.5); the applicator (open) keeps both sides at 0.5
    organ_alpha, organ_culled = _centre_alpha_and_culling("BOWEL")
    tool_alpha, tool_culled = _centre_alpha_and_culling("applicator")
    assert organ_culled and not tool_culled
    assert organ_alpha == pytest.approx(0.75, abs=0.03)
    assert tool_alpha == pytest.approx(0.75, abs=0.03)
