"""Retracted organs in the 3D and AR views: solid where they are now, dashed where they were.

A retracted organ's surface is moved rigidly to where the edits put it (its scene mesh's
points are rewritten in place, so every view of the mesh follows: the actor in the 3D view,
the AR overlay and the organ's silhouette there). Its preoperative position is drawn as a
*dashed outline*: :func:`dashed_outline_mesh` cuts the original surface into contour loops
every few millimetres and keeps alternate pieces of each loop, a line mesh in the organ's
colour (VTK has no line stipple on modern OpenGL; the gaps are geometry).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pyvista as pv

from guidance.render.scene import Scene, SceneItem
from models.base.validation import as_positive, as_transform

#: Name suffix of the dashed preoperative outline of an organ in the scene.
PREOPERATIVE_SUFFIX = ":preoperative"
#: Look of the dashed outline: opacity (lines in the organ's colour).
STYLE_PREOPERATIVE = {"opacity": 0.9}


def dashed_outline_mesh(mesh: pv.PolyData, *, spacing_mm: float = 8.0, dash_mm: float = 4.0,
                        axis: int = 2) -> pv.PolyData:
    """Dashed contour loops of a surface (patient LPS mm): cuts every ``spacing_mm`` normal
    to ``axis`` (0, 1, 2 = x, y, z), each loop kept ``dash_mm`` on, ``dash_mm`` off.

    Examples
    --------
    >>> lines = dashed_outline_mesh(pv.Sphere(radius=20.0), spacing_mm=10.0, dash_mm=3.0)
    >>> bool(lines.n_lines > 10)
    True
    """
    spacing = as_positive(spacing_mm, name="spacing_mm")
    dash = as_positive(dash_mm, name="dash_mm")
    if mesh.n_points == 0:
        return pv.PolyData()
    lo, hi = mesh.bounds[2 * axis], mesh.bounds[2 * axis + 1]
    n = max(1, int((hi - lo) // spacing))
    normal = np.zeros(3)
    normal[axis] = 1.0
    pieces = []
    for value in lo + spacing * (np.arange(n) + 0.5):
        origin = np.array(mesh.center, dtype=np.float64)
        origin[axis] = value
        cut = mesh.slice(normal=normal, origin=origin)
        if cut.n_points:
            pieces.append(_dashes(cut, dash))
    pieces = [p for p in pieces if p.n_points]
    if not pieces:
        return pv.PolyData()
    return pieces[0].merge(pieces[1:]) if len(pieces) > 1 else pieces[0]


def _dashes(lines: pv.PolyData, dash_mm: float) -> pv.PolyData:
    """Keep segments of a line mesh whose running length falls in an 'on' dash."""
    lines = lines.strip()   # polylines
    points = np.asarray(lines.points)
    cells = []
    offset = 0
    raw = np.asarray(lines.lines)
    while offset < len(raw):
        count = int(raw[offset])
        ids = raw[offset + 1:offset + 1 + count]
        offset += count + 1
        seg = np.linalg.norm(np.diff(points[ids], axis=0), axis=1)
        run = np.concatenate([[0.0], np.cumsum(seg)])
        for a, b, start in zip(ids[:-1], ids[1:], run[:-1], strict=True):
            if int(start // dash_mm) % 2 == 0:
                cells.append((2, int(a), int(b)))
    if not cells:
        return pv.PolyData()
    out = pv.PolyData(points.copy(), lines=np.asarray(cells, dtype=np.int64).ravel())
    return out.clean()


def show_retractions(scene: Scene, originals: Mapping[str, np.ndarray],
                     moves: Mapping[str, np.ndarray], outlines: Mapping[str, pv.PolyData],
                     colors: Mapping[str, tuple[float, float, float]]) -> None:
    """Put retracted organs where they are now and their dashed outlines where they were.

    Parameters
    ----------
    scene : Scene
        Its organ items' meshes are moved in place (their points rewritten).
    originals : mapping name -> (N, 3) array
        Each organ mesh's preoperative points (LPS mm), kept by the caller.
    moves : mapping name -> (4, 4) array
        ``patient_from_retracted`` of every organ that is moved now; organs not listed go
        back to their preoperative points and lose their dashed outline.
    outlines : mapping name -> PolyData
        Dashed preoperative outline of each organ (:func:`dashed_outline_mesh`).
    colors : mapping name -> RGB 0..1
    """
    for name, points in originals.items():
        item = scene.items.get(name)
        if item is None:
            continue
        move = moves.get(name)
        if move is None:
            new = points
        else:
            m = as_transform(move, name=f"moves[{name}]")
            new = points @ m[:3, :3].T + m[:3, 3]
        if not np.array_equal(np.asarray(item.mesh.points), new):
            item.mesh.points = np.array(new, dtype=np.float32)
            item.mesh.Modified()
        key = name + PREOPERATIVE_SUFFIX
        if move is None:
            scene.items.pop(key, None)
        elif key not in scene.items and name in outlines:
            scene.add(SceneItem(key, outlines[name], colors.get(name, (1.0, 1.0, 1.0)),
                                **STYLE_PREOPERATIVE))
