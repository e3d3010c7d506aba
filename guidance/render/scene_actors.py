"""Keeping a pyvista plotter's actors in step with a :class:`~guidance.render.scene.Scene`.

The AR overlay (offscreen) and the monitor's 3D view draw the same scene through
:class:`SceneActors`, so an item that moves, changes mesh, hides or disappears does so in
every view the same way. No Qt here: the 3D view hands in its pyvistaqt plotter.
"""

from __future__ import annotations

from guidance.render.scene import Scene, SceneItem


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
    """

    def __init__(self, plotter, scene: Scene, *, name_prefix: str = "",
                 smooth_shading: bool = False) -> None:
        self.plotter = plotter
        self.scene = scene
        self.name_prefix = name_prefix
        self.smooth_shading = smooth_shading
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
        for name, item in self.scene.items.items():
            if self._mesh_ids.get(name) != id(item.mesh):
                if name in self.actors:
                    self._remove(name)
                self.actors[name] = self._add(item)
                self._mesh_ids[name] = id(item.mesh)
            actor = self.actors[name]
            if actor is None:
                continue
            actor.SetVisibility(bool(item.visible) and name not in self.hidden)
            if item.patient_from_item is not None:
                actor.user_matrix = item.patient_from_item

    def _remove(self, name: str) -> None:
        actor = self.actors.pop(name)
        self._mesh_ids.pop(name, None)
        if actor is not None:
            self.plotter.remove_actor(actor, render=False)

    def _add(self, item: SceneItem) -> object:
        if item.mesh.n_points == 0:
            return None
        return self.plotter.add_mesh(item.mesh, color=item.color, opacity=item.opacity,
                                     smooth_shading=self.smooth_shading,
                                     name=f"{self.name_prefix}{item.name}", render=False,
                                     reset_camera=False)


def add_organ_outlines(plotter, scene: Scene, *, target: str = "CTV",
                       line_width: float = 2.0) -> dict[str, object]:
    """Add a view-dependent outline (VTK silhouette) of every organ of ``scene``.

    The outline follows the plotter's camera at every render; at 1280x720 with the
    phantom's organs it costs no measurable frame rate. Returns the outline actors by
    organ name (to hide one with its organ).
    """
    skip = {target, "applicator", "planned_applicator", "isodose", "disc"}
    added = {}
    for name, item in scene.items.items():
        if name not in skip and item.mesh.n_points:
            added[name] = plotter.add_silhouette(item.mesh, color=item.color,
                                                 line_width=line_width)
    return added
