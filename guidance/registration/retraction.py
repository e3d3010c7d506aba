"""Where did the organ go? A pointer sweep over a retracted organ -> its new pose.

The surgeon sweeps the tracked pointer over the organ where it now lies (the
:class:`~guidance.registration.surface.SweepCollector` collects the tips in patient LPS);
:func:`fit_retraction` fits the organ's preoperative surface mesh to those points by ICP
(:func:`~guidance.registration.surface.register_surface`, the same ICP as the skin
registration) and returns ``patient_from_retracted`` for a
:class:`models.patient.edits.Retraction` — or refuses it: too few points, a residual above
``max_rms_mm`` or too few points near the fitted surface (``min_fitness``) mean the sweep
does not show that organ, and a wrong organ position in the dose is worse than none.

A sweep covers only the exposed side of the organ, so the ICP is started from several
guesses (the given one, no move, and the sweep centroid pulled onto the organ) and the best
fit wins.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from guidance.registration.surface import register_surface, surface_points
from models.base.errors import InputError
from models.base.transforms import invert_rigid
from models.base.validation import as_points, as_transform
from models.patient.case import Case
from models.patient.edits import Provenance, Retraction

#: Fewest pointer tips a sweep needs: fewer cannot pin down an organ's pose (refused).
MIN_SWEEP_POINTS = 50


@dataclass(frozen=True)
class RetractionFit:
    """Result of :func:`fit_retraction`.

    Attributes
    ----------
    structure : str
    patient_from_retracted : (4, 4) array
        Maps the organ's preoperative points to where the sweep found it.
    rms_mm : float
        Inlier RMS distance of the sweep points to the fitted surface.
    fitness : float
        Share of sweep points within the last ICP distance of the surface.
    n_points : int
    accepted : bool
    reason : str
        Why it was refused ("" when accepted).
    """

    structure: str
    patient_from_retracted: np.ndarray
    rms_mm: float
    fitness: float
    n_points: int
    accepted: bool
    reason: str = ""


def _guesses(points: np.ndarray, surface: np.ndarray,
             initial: np.ndarray | None) -> list[np.ndarray]:
    """Initial ``before_from_now`` transforms to start the ICP from."""
    guesses = [] if initial is None else [invert_rigid(initial)]
    guesses.append(np.eye(4))
    # the sweep centroid onto the surface point nearest to where the centroid would sit
    # if the organ had moved without turning
    centroid = points.mean(axis=0)
    shift = surface.mean(axis=0) - centroid
    nearest = surface[np.argmin(np.linalg.norm(surface - (centroid + shift), axis=1))]
    for delta in (shift, nearest - centroid):
        guess = np.eye(4)
        guess[:3, 3] = delta
        guesses.append(guess)
    return guesses


def fit_retraction(case: Case, structure: str, sweep_lps: np.ndarray, *,
                   initial_patient_from_retracted: np.ndarray | None = None,
                   max_rms_mm: float = 1.5, min_fitness: float = 0.8,
                   min_points: int = MIN_SWEEP_POINTS) -> RetractionFit:
    """Fit ``structure``'s preoperative surface to pointer-sweep points (patient LPS, mm).

    Parameters
    ----------
    case : Case
        The preoperative case (its structure mesh is the model).
    structure : str
    sweep_lps : (N, 3) array
        Pointer tips on the organ where it lies now.
    initial_patient_from_retracted : (4, 4) array, optional
        A first guess (e.g. the organ's current retraction, or a drag in the 3D view).
    max_rms_mm, min_fitness, min_points :
        Refusal thresholds.
    """
    points = as_points(sweep_lps, name="sweep_lps")
    mesh_points, normals = surface_points(case.mesh(structure))
    if len(points) < min_points:
        return RetractionFit(structure, np.eye(4), float("nan"), 0.0, len(points), False,
                             f"{len(points)} sweep points, need {min_points}: sweep more of "
                             f"the {structure} surface")
    initial = (None if initial_patient_from_retracted is None else
               as_transform(initial_patient_from_retracted,
                            name="initial_patient_from_retracted", rigid=True, atol=1e-5))
    best = None
    for guess in _guesses(points, mesh_points, initial):
        try:
            fit = register_surface(points, mesh_points, target_normals=normals,
                                   initial_target_from_source=guess,
                                   distances_mm=(30.0, 10.0, 3.0))
        except InputError:
            continue
        score = (fit.fitness, -fit.inlier_rms_mm)
        if best is None or score > (best.fitness, -best.inlier_rms_mm):
            best = fit
    if best is None:
        raise InputError(f"{structure}: the sweep could not be fitted to its surface")
    patient_from_retracted = invert_rigid(best.target_from_source)
    reasons = []
    if best.inlier_rms_mm > max_rms_mm:
        reasons.append(f"residual {best.inlier_rms_mm:.1f} mm > {max_rms_mm:g} mm")
    if best.fitness < min_fitness:
        reasons.append(f"only {100 * best.fitness:.0f} % of the points lie on the fitted "
                       f"{structure} (need {100 * min_fitness:.0f} %)")
    reason = "; ".join(reasons)
    if reason:
        reason += f": the sweep does not match the {structure}; sweep again over it"
    return RetractionFit(structure, patient_from_retracted, best.inlier_rms_mm, best.fitness,
                         len(points), not reasons, reason)


class RetractorCoupling:
    """An organ that follows a tracked retractor between "grab" and "release".

    At :meth:`grab` the organ's current retraction and the retractor pose are remembered;
    while coupled, :meth:`follow` gives the organ's retraction for the retractor's newest
    pose (the organ moves rigidly with the blade); :meth:`release` freezes it and returns
    the :class:`~models.patient.edits.Retraction` to add to the case's edits.

    Parameters
    ----------
    structure : str
        The organ the blade holds.
    patient_from_retracted : (4, 4) array, optional
        Where the organ is when grabbed (its current retraction; default not moved).

    Examples
    --------
    >>> coupling = RetractorCoupling("BOWEL")
    >>> blade = np.eye(4); coupling.grab(blade)
    >>> blade2 = np.eye(4); blade2[:3, 3] = (0.0, -25.0, 0.0)   # pulled 25 mm anterior
    >>> coupling.follow(blade2)[:3, 3].tolist()
    [0.0, -25.0, 0.0]
    >>> coupling.release(who="surgeon").describe()
    'BOWEL moved 25 mm, 0 deg'
    """

    def __init__(self, structure: str, patient_from_retracted: np.ndarray | None = None
                 ) -> None:
        self.structure = structure
        self.patient_from_retracted = (np.eye(4) if patient_from_retracted is None else
                                       as_transform(patient_from_retracted,
                                                    name="patient_from_retracted", rigid=True,
                                                    atol=1e-5))
        self._retractor_from_organ: np.ndarray | None = None

    @property
    def coupled(self) -> bool:
        """True between :meth:`grab` and :meth:`release`."""
        return self._retractor_from_organ is not None

    def grab(self, patient_from_retractor: np.ndarray) -> None:
        """Couple the organ to the retractor at its current pose."""
        pose = as_transform(patient_from_retractor, name="patient_from_retractor", rigid=True,
                            atol=1e-5)
        self._retractor_from_organ = invert_rigid(pose) @ self.patient_from_retracted

    def follow(self, patient_from_retractor: np.ndarray | None) -> np.ndarray:
        """The organ's retraction for the retractor's pose (None = not tracked now: the
        organ stays where it was last seen)."""
        if self._retractor_from_organ is not None and patient_from_retractor is not None:
            pose = as_transform(patient_from_retractor, name="patient_from_retractor",
                                rigid=True, atol=1e-5)
            self.patient_from_retracted = pose @ self._retractor_from_organ
        return self.patient_from_retracted

    def release(self, *, who: str = "", fill: str = "air") -> Retraction:
        """Freeze the organ where it is; the edit to record."""
        self._retractor_from_organ = None
        return Retraction(self.structure, self.patient_from_retracted, fill=fill,
                          provenance=Provenance(who=who, how="tracked retractor"))
