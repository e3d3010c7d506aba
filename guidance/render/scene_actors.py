"""Keeping a pyvista plotter's actors in step with a :class:`~guidance.render.scene.Scene`.

The AR overlay (offscreen) and the monitor's 3D view draw the same scene through
:class:`SceneActors`, so an item that moves, changes mesh, hides or disappears does so in
every view the same way. No Qt here: the 3D view hands in its pyvistaqt plotter.
"""

from __future__ import annotations

import pyvista as pv

from guidance.render.scene import Scene, SceneItem

#: Items that are not closed organ surfaces: their inside is seen (through the tube, under
#: the disc), so their back faces are drawn.
OPEN_ITEMS = frozenset({"applicator", "planned_applicator", "disc", "retractor"})


class SceneActors:
    """Actors of ``scene`` in ``plotter``, created, replaced or removed by :meth:`sync`.

    Parameters
    ----------
    plotter : pyvista.Plotter (or pyvistaqt's)
    scene : Scene
    name_prefix : str
        Prefix of the actor names (two views in one process keep distinct names).
    smooth_shading : bool
        Phong shading of the meshes (the AR overlay uses it).
    max_triangles : int or None
        Live-view triangle budget: a mesh with more triangles is drawn from a decimated copy
        (quadric error, :func:`models.patient.anatomy.decimate_mesh`, made once per mesh).
        A CPU rasteriser's time grows with the triangles; ``None`` draws the meshes as given.
    layers : sequence of str or None
        Draw order of the translucent items, for views without depth sorting: the items
        named here are drawn last, in this order (on top), the others first in scene
        order. ``None`` leaves the order to the plotter.
    cull_back_faces : bool
        Draw only the front faces of closed surfaces (organs, target, isodose), at the
        opacity two layers had (``1 - (1 - a)^2``): the same look at half the pixels.
        Open items (:data:`OPEN_ITEMS`) keep both sides.

    Examples
    --------
    >>> import pyvista as pv
    >>> from guidance.render.scene import Scene, SceneItem
    >>> scene = Scene()
    >>> scene.add(SceneItem("ball", pv.Sphere(theta_resolution=60, phi_resolution=60),
    ...                     (1.0, 0.0, 0.0)))
    >>> plotter = pv.Plotter(off_screen=True)
    >>> actors = SceneActors(plotter, scene, max_triangles=500)
    >>> actors.sync()
    >>> actors.shown_mesh("ball").n_cells <= 500 < scene.items["ball"].mesh.n_cells
    True
    >>> plotter.close()
    """

    def __init__(self, plotter, scene: Scene, *, name_prefix: str = "",
                 smooth_shading: bool = False, max_triangles: int | None = None,
                 cull_back_faces: bool = False,
                 layers: tuple[str, ...] | None = None) -> None:
        self.plotter = plotter
        self.scene = scene
        self.name_prefix = name_prefix
        self.smooth_shading = smooth_shading
        self.max_triangles = None if max_triangles is None else int(max_triangles)
        self.cull_back_faces = bool(cull_back_faces)
        self.layers = None if layers is None else tuple(layers)
        self._shown: dict[str, pv.PolyData] = {}
        self._shown_mtime: dict[str, int] = {}
        self.actors: dict[str, object] = {}
        self._mesh_ids: dict[str, int] = {}
        #: Items this view leaves out although the scene shows them (e.g. the AR view's
        #: decluttering); the others follow ``SceneItem.visible``.
        self.hidden: set[str] = set()

    def sync(self) -> None:
        """Make the actors match the scene's items (mesh, visibility, pose)."""
        for name in list(self.actors):
            if name not in self.scene.items:
                self._remove(name)
        added = False
        for name, item in self.scene.items.items():
            if self._mesh_ids.get(name) != id(item.mesh):
                if name in self.actors:
                    self._remove(name)
                self.actors[name] = self._add(item)
                self._mesh_ids[name] = id(item.mesh)
                added = True
            actor = self.actors[name]
            if actor is None:
                continue
            if name in self._shown and self._shown_mtime[name] != item.mesh.GetMTime():
                self._decimate(item)   # moved in place (a retraction): the copy follows
            actor.SetVisibility(bool(item.visible) and name not in self.hidden)
            if item.patient_from_item is not None:
                actor.user_matrix = item.patient_from_item
        if added and self.layers is not None:
            self._restack()

    def _restack(self) -> None:
        """Put the actors in the renderer in :attr:`layers` order (drawn in that order)."""
        rank = {name: k for k, name in enumerate(self.layers or ())}
        names = sorted((n for n, a in self.actors.items() if a is not None),
                       key=lambda n: rank.get(n, -1))     # stable: scene order first
        renderer = self.plotter.renderer
        for name in names:
            renderer.RemoveActor(self.actors[name])
            renderer.AddActor(self.actors[name])

    def shown_mesh(self, name: str) -> pv.PolyData:
        """The mesh this view draws for item ``name`` (its decimated copy when the item
        is over :attr:`max_triangles`)."""
        return self._shown.get(name, self.scene.items[name].mesh)

    def _decimate(self, item: SceneItem) -> pv.PolyData:
        """The decimated copy of ``item``'s mesh, updated in place when it exists (its
        actor and outline draw the same object)."""
        from models.patient.anatomy import decimate_mesh

        fresh = decimate_mesh(item.mesh, self.max_triangles)
        shown = self._shown.get(item.name)
        if shown is None:
            shown = self._shown[item.name] = fresh
        else:
            shown.copy_from(fresh)
            shown.Modified()
        self._shown_mtime[item.name] = item.mesh.GetMTime()
        return shown

    def _remove(self, name: str) -> None:
        actor = self.actors.pop(name)
        self._mesh_ids.pop(name, None)
        self._shown.pop(name, None)
        self._shown_mtime.pop(name, None)
        if actor is not None:
            self.plotter.remove_actor(actor, render=False)

    def _add(self, item: SceneItem) -> object:
        if item.mesh.n_points == 0:
            return None
        mesh = item.mesh
        if self.max_triangles is not None and mesh.n_cells > self.max_triangles:
            mesh = self._decimate(item)
        cull = self.cull_back_faces and item.name not in OPEN_ITEMS
        opacity = float(item.opacity)
        if cull:   # one layer now where the eye saw two: the same look, 1 - (1 - a)^2
            opacity = 1.0 - (1.0 - opacity) ** 2
        actor = self.plotter.add_mesh(mesh, color=item.color, opacity=opacity,
                                      smooth_shading=self.smooth_shading,
                                      name=f"{self.name_prefix}{item.name}", render=False,
                                      reset_camera=False)
        if cull:
            actor.GetProperty().BackfaceCullingOn()
        return actor


def add_organ_outlines(plotter, scene: Scene, *, target: str = "CTV",
                       line_width: float = 2.0,
                       actors: SceneActors | None = None) -> dict[str, object]:
    """Add a view-dependent outline (VTK silhouette) of every organ of ``scene``.

    The outline follows the plotter's camera at every render; at 1280x720 with the
    phantom's organs it costs no measurable frame rate. Returns the outline actors by
    organ name (to hide one with its organ). With ``actors``, each outline is drawn from
    the mesh that view shows (its decimated copy), so outline and surface agree.
    """
    skip = {target, "applicator", "planned_applicator", "isodose", "disc"}
    added = {}
    for name, item in scene.items.items():
        if name not in skip and item.mesh.n_points:
            mesh = item.mesh if actors is None else actors.shown_mesh(name)
            added[name] = plotter.add_silhouette(mesh, color=item.color,
                                                 line_width=line_width)
    return added
