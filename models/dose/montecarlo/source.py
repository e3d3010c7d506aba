"""Electron source model at the applicator end for the Monte Carlo check.

The model (per machine and nominal energy, ``assets/beams/mc_source.json``):

* **energy spectrum**: a histogram (bin edges in MeV, relative number of electrons per
  bin) at the applicator end, fitted by non-negative least squares to the commissioning
  depth dose in water (``benchmarks/mc/commission_source.py``: one ompmc run per energy
  bin, the water depth dose being linear in the bin weights);
* **spatial and angular spread**: electrons leave a virtual point source on the applicator
  axis, ``virtual_ssd_mm`` upstream of the end-face centre, towards a uniformly sampled
  point of the aperture; the point source is blurred by a 2-D Gaussian of
  ``source_sigma_mm`` in the aperture plane (ompmc's ``gaussian_source``), which gives the
  beam an angular spread of about ``source_sigma_mm / virtual_ssd_mm`` rad. There are two
  **components**, each with its own spectrum weights: the direct beam (the machine's
  angular spread) and the electrons scattered by the applicator wall (a wide angular
  spread, :data:`SCATTER_SOURCE_SIGMA_MM`), which raise the surface dose and broaden the
  maximum of an IORT applicator's depth dose;
* **aperture**: square beamlets tiling the applicator's circular cross-section, each lying
  in the (bevelled) end face ``z = y tan(bevel)`` of the applicator frame
  (:class:`models.beams.applicator.Applicator`), so a bevel is geometry, not a correction;
* **radial fluence** (:class:`RadialFluence`, per applicator): the relative number of
  electrons per unit area of each component against the distance from the aperture rim
  (piecewise linear between :data:`RIM_NODES_MM`), fitted by non-negative least squares
  to the applicator's depth dose and profiles (the dose is linear in them too). The
  applicator wall scatters electrons inwards near the rim, which a uniform fluence
  does not have: without it the Monte Carlo profiles are domed. An applicator without
  its own fit takes the fluence interpolated in diameter between the fitted ones of the
  same bevel (nearest bevel otherwise), and says so. A bevelled applicator's fluence
  also changes from heel to toe, piecewise linear between the heel, the toe and
  inner nodes along y (:attr:`RadialFluence.inner_y`, fitted at each);
* **per-applicator spectrum** (optional, :attr:`RadialFluence.spectrum_weights`): a fitted
  applicator may carry its own spectrum per component (the energy's bins; fitted to its
  own curves with its radial fluence fixed): a small applicator has relatively more
  low-energy electrons scattered by its wall and less lateral equilibrium than the
  100 mm one the energy's spectrum was fitted on. Interpolated in diameter like the
  fluence (a fit without its own spectrum counting with the energy's).

A machine without a fitted model falls back on a Gaussian spectrum around the mean
surface energy E0 = 2.33 MeV/cm x R50 of its beam data, flagged ``commissioned = False``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from models.base.errors import InputError
from models.beams.applicator import Applicator
from models.beams.library import E0_PER_R50_MEV_PER_MM, ElectronBeam, default_library
from models.dose.materials import read_beam_asset

#: Side (mm) of the square beamlets tiling the aperture.
BEAMLET_MM = 2.0

#: Relative width (sigma / E0) of the fallback Gaussian spectrum.
FALLBACK_SIGMA = 0.05

#: Source spread (mm at the virtual source) of the fallback model.
FALLBACK_SOURCE_SIGMA_MM = 12.0

#: Source spread (mm at the virtual source) of the wall-scatter component.
SCATTER_SOURCE_SIGMA_MM = 300.0

#: How :meth:`SourceModel.spectrum` names the energy's own spectrum.
ENERGY_SPECTRUM = "of the energy (fitted on the 100 mm flat applicator)"

#: Nodes (mm, distance of a beamlet centre from the aperture rim) of the radial fluence:
#: piecewise linear between them, constant beyond the last one (towards the axis).
RIM_NODES_MM = (0.0, 4.0, 10.0, 20.0)


@dataclass(frozen=True, eq=False)
class RadialFluence:
    """Fitted fluence of one applicator by component, against the distance from the rim.

    Attributes
    ----------
    diameter_mm, bevel_deg : float
        The applicator it was fitted for.
    nodes_mm : tuple of float
        Distances from the rim (mm), increasing from 0, where the fluence is given.
    fluence : numpy.ndarray
        (C, K) relative electrons per unit aperture area at the nodes, per component
        (>= 0); linear between the nodes, constant beyond the last. For a bevel: at the
        heel (y = -radius, seen along the beam).
    toe_fluence : numpy.ndarray or None
        (C, K) the same at the toe (y = +radius) of a bevelled applicator, the fluence
        piecewise linear in y from heel to toe (the bevel's heel-to-toe gradient); None:
        no gradient.
    spectrum_weights : numpy.ndarray or None
        (C, B) this applicator's own spectrum per component over the energy's bins
        (>= 0, each row normalised to sum 1; the components' shares stay those of the
        fluence); None: the energy's spectrum.
    inner_y : tuple of float
        Inner nodes of a bevel's heel-to-toe gradient: fractions of the way from the heel
        (0) to the toe (1), increasing, strictly between them (empty: linear from heel
        to toe).
    inner_fluence : numpy.ndarray or None
        (J, C, K) the fluence at the inner nodes (one (C, K) per ``inner_y``).
    """

    diameter_mm: float
    bevel_deg: float
    nodes_mm: tuple[float, ...]
    fluence: np.ndarray
    toe_fluence: np.ndarray | None = None
    spectrum_weights: np.ndarray | None = None
    inner_y: tuple[float, ...] = ()
    inner_fluence: np.ndarray | None = None

    def __post_init__(self) -> None:
        f = np.atleast_2d(np.asarray(self.fluence, dtype=np.float64))
        object.__setattr__(self, "fluence", f)
        toe = (None if self.toe_fluence is None
               else np.atleast_2d(np.asarray(self.toe_fluence, dtype=np.float64)))
        object.__setattr__(self, "toe_fluence", toe)
        nodes = tuple(float(e) for e in self.nodes_mm)
        object.__setattr__(self, "nodes_mm", nodes)
        inner_y = tuple(float(t) for t in self.inner_y)
        object.__setattr__(self, "inner_y", inner_y)
        inner = (np.zeros((0, *f.shape)) if self.inner_fluence is None
                 else np.asarray(self.inner_fluence, dtype=np.float64).reshape(-1, *f.shape))
        object.__setattr__(self, "inner_fluence", inner if inner_y else None)
        both = f if toe is None else np.concatenate([f, toe, *inner])
        if (f.shape[1] != len(nodes) or nodes[0] != 0.0 or np.any(np.diff(nodes) <= 0)
                or (toe is not None and toe.shape != f.shape)
                or np.any(~np.isfinite(both)) or np.any(both < 0) or not both.sum() > 0):
            raise InputError(f"radial fluence {self.diameter_mm:g} mm {self.bevel_deg:g} deg:"
                             " nodes must increase from 0, one fluence per node (heel and toe"
                             " alike), all >= 0")
        ts = np.array((0.0, *inner_y, 1.0))
        if inner.shape[0] != len(inner_y) or (inner_y and (
                toe is None or np.any(np.diff(ts) <= 0))):
            raise InputError(f"radial fluence {self.diameter_mm:g} mm {self.bevel_deg:g} deg:"
                             " inner_y must increase strictly between heel (0) and toe (1),"
                             " with one inner_fluence per node and a toe_fluence")
        if self.spectrum_weights is not None:
            w = np.asarray(self.spectrum_weights, dtype=np.float64)
            if (w.ndim != 2 or w.shape[0] != f.shape[0] or np.any(~np.isfinite(w))
                    or np.any(w < 0) or not np.all(w.sum(axis=1) > 0)):
                raise InputError(f"radial fluence {self.diameter_mm:g} mm "
                                 f"{self.bevel_deg:g} deg: spectrum_weights must be one row "
                                 f"of bin weights per component ({f.shape[0]}), >= 0, each "
                                 "row with a positive sum")
            object.__setattr__(self, "spectrum_weights", w / w.sum(axis=1, keepdims=True))

    @property
    def y_nodes(self) -> tuple[tuple[float, ...], np.ndarray]:
        """``(t, fluence)``: the heel-to-toe nodes (fractions from heel 0 to toe 1) and the
        (J, C, K) fluence at each; ``((0.0,), fluence[None])`` without a gradient."""
        if self.toe_fluence is None:
            return (0.0,), self.fluence[None]
        inner = () if self.inner_fluence is None else tuple(self.inner_fluence)
        return (0.0, *self.inner_y, 1.0), np.stack([self.fluence, *inner, self.toe_fluence])

    def at(self, rim_distance_mm: np.ndarray, y_mm: np.ndarray | None = None) -> np.ndarray:
        """(C, N) fluence at beamlet centres: distances from the rim (N,) mm and, for the
        heel-to-toe gradient, y (N,) mm seen along the beam (the heel's fluence without
        ``y_mm``)."""
        d = np.asarray(rim_distance_mm, dtype=np.float64)
        ts, stack = self.y_nodes

        def radial(rows: np.ndarray) -> np.ndarray:
            return np.stack([np.interp(d, self.nodes_mm, row) for row in rows])

        if y_mm is None or len(ts) == 1:
            return radial(stack[0])
        t = np.clip(0.5 + 0.5 * np.asarray(y_mm, dtype=np.float64)
                    / (0.5 * self.diameter_mm), 0.0, 1.0)
        return sum(np.interp(t, ts, np.eye(len(ts))[j]) * radial(rows)
                   for j, rows in enumerate(stack))

    def mixed(self, other: RadialFluence, t: float, diameter_mm: float) -> RadialFluence:
        """``(1 - t) self + t other`` (fluence and heel-to-toe nodes on the union of both
        fits' nodes; the spectrum is :meth:`SourceModel.spectrum`'s), for ``diameter_mm``."""
        mine, theirs = self.y_nodes, other.y_nodes
        if (self.toe_fluence is None) != (other.toe_fluence is None):
            raise InputError("radial fluence: a flat and a bevelled fit cannot be mixed")
        ts = np.union1d(mine[0], theirs[0])

        def on(nodes: tuple[tuple[float, ...], np.ndarray]) -> np.ndarray:
            t0, stack = nodes
            if len(t0) == 1:
                return stack
            flat = stack.reshape(len(t0), -1)
            return np.stack([np.interp(ts, t0, flat[:, i]) for i in range(flat.shape[1])],
                            axis=1).reshape(len(ts), *stack.shape[1:])

        stack = (1.0 - t) * on(mine) + t * on(theirs)
        if self.toe_fluence is None:
            return RadialFluence(diameter_mm, self.bevel_deg, self.nodes_mm, stack[0])
        return RadialFluence(diameter_mm, self.bevel_deg, self.nodes_mm, stack[0], stack[-1],
                             None, tuple(ts[1:-1]), stack[1:-1] if ts.size > 2 else None)


def rim_distance_mm(applicator: Applicator, beamlets: Beamlets) -> np.ndarray:
    """(N,) distance (mm) of each beamlet's centre from the aperture rim, seen along the
    beam (negative outside)."""
    centre = beamlets.corner_mm + 0.5 * (beamlets.side1_mm + beamlets.side2_mm)
    return applicator.radius_mm - np.hypot(centre[:, 0], centre[:, 1])


@dataclass(frozen=True, eq=False)
class SourceModel:
    """Commissioned (or fallback) source of one machine and nominal energy.

    Attributes
    ----------
    machine : str
    energy_mev : float
        Nominal energy (MeV).
    edges_mev : numpy.ndarray
        (B+1,) increasing kinetic-energy bin edges (MeV).
    weights : numpy.ndarray
        (C, B) relative number of electrons per component and bin (non-negative, sum 1).
    virtual_ssd_mm : float
        Distance (mm) from the virtual point source to the end-face centre.
    source_sigma_mm : tuple of float
        (C,) Gaussian spread (mm, one axis) of the source position in the aperture plane,
        per component.
    commissioned : bool
        Fitted to the machine's commissioning data (False: fallback estimate).
    provenance : str
        How the numbers were obtained.
    radial : tuple of RadialFluence
        Fitted radial fluences per applicator (empty: uniform fluence, components shared
        by the rows of ``weights``).
    """

    machine: str
    energy_mev: float
    edges_mev: np.ndarray
    weights: np.ndarray
    virtual_ssd_mm: float
    source_sigma_mm: tuple[float, ...]
    commissioned: bool
    provenance: str
    radial: tuple[RadialFluence, ...] = ()

    def __post_init__(self) -> None:
        w = np.atleast_2d(np.asarray(self.weights, dtype=np.float64))
        object.__setattr__(self, "weights", w)
        object.__setattr__(self, "source_sigma_mm",
                           tuple(float(v) for v in np.atleast_1d(self.source_sigma_mm)))
        if w.shape != (len(self.source_sigma_mm), self.edges_mev.size - 1):
            raise InputError(f"source model {self.machine} {self.energy_mev:g} MeV: weights "
                             f"{w.shape} do not match {len(self.source_sigma_mm)} components "
                             f"x {self.edges_mev.size - 1} bins")
        for r in self.radial:
            if r.spectrum_weights is not None and r.spectrum_weights.shape != w.shape:
                raise InputError(f"source model {self.machine} {self.energy_mev:g} MeV, "
                                 f"{r.diameter_mm:g} mm {r.bevel_deg:g} deg: spectrum_weights "
                                 f"{r.spectrum_weights.shape} do not match {w.shape[0]} "
                                 f"components x {w.shape[1]} bins")

    @property
    def mean_energy_mev(self) -> float:
        """Mean kinetic energy (MeV) of the histogram (all components)."""
        centres = 0.5 * (self.edges_mev[1:] + self.edges_mev[:-1])
        return float(np.sum(centres * self.weights.sum(axis=0)) / self.weights.sum())

    def component(self, index: int) -> tuple[float, np.ndarray, float]:
        """(share of the electrons with a uniform fluence, spectrum weights (B,) summing
        to 1, source sigma mm)."""
        w = self.weights[index]
        share = float(w.sum() / self.weights.sum())
        return share, (w / w.sum() if w.sum() > 0 else w), self.source_sigma_mm[index]

    def _neighbours(self, applicator: Applicator
                    ) -> tuple[RadialFluence, RadialFluence, float, bool]:
        """The fits ``applicator`` takes its fluence from: ``(lo, hi, t, exact)``, the
        value being ``(1 - t) lo + t hi``; nearest fitted bevel, linear in diameter between
        the two nearest fitted diameters (held constant beyond the fitted range)."""
        bevels = sorted({r.bevel_deg for r in self.radial})
        bevel = min(bevels, key=lambda b: abs(b - applicator.bevel_deg))
        fits = sorted((r for r in self.radial if r.bevel_deg == bevel),
                      key=lambda r: r.diameter_mm)
        d = applicator.diameter_mm
        for r in fits:
            if math.isclose(r.diameter_mm, d) and bevel == applicator.bevel_deg:
                return r, r, 0.0, True
        sizes = np.array([r.diameter_mm for r in fits])
        hi = int(np.clip(np.searchsorted(sizes, d), 1, max(1, sizes.size - 1)))
        lo = hi - 1 if sizes.size > 1 else 0
        hi = min(hi, sizes.size - 1)
        t = 0.0 if hi == lo else float(np.clip((d - sizes[lo]) / (sizes[hi] - sizes[lo]),
                                               0.0, 1.0))
        return fits[lo], fits[hi], t, False

    def radial_fluence(self, applicator: Applicator) -> tuple[RadialFluence | None, str]:
        """``(fluence, how)``: the radial fluence for ``applicator`` (its fit, or one mixed
        from the fits around it) and how it was obtained; ``(None, "uniform ...")`` when
        the model has no radial fit.

        Exact fit if there is one; else linear in diameter between the two nearest fitted
        diameters of the nearest fitted bevel (held constant beyond the fitted range).
        With per-applicator spectra, ``how`` says which spectrum is used as well.
        """
        if not self.radial:
            return None, "uniform fluence (no radial fit)"
        lo, hi, t, exact = self._neighbours(applicator)
        fluence = lo if exact else lo.mixed(hi, t, applicator.diameter_mm)
        if exact:
            how = f"fitted for {lo.diameter_mm:g} mm {lo.bevel_deg:g} deg"
        elif hi is not lo:
            how = (f"interpolated from the fits for {lo.diameter_mm:g} and "
                   f"{hi.diameter_mm:g} mm {lo.bevel_deg:g} deg")
        else:
            how = f"taken from the fit for {lo.diameter_mm:g} mm {lo.bevel_deg:g} deg"
        if any(r.spectrum_weights is not None for r in self.radial):
            how += f"; spectrum {self.spectrum(applicator)[1]}"
        return fluence, how

    def spectrum(self, applicator: Applicator) -> tuple[np.ndarray, str]:
        """``(weights, how)``: the (C, B) spectrum per component for ``applicator`` (each
        row summing to 1, or 0 for an empty component) and how it was obtained.

        The energy's spectrum unless a fit carries its own (:attr:`RadialFluence.
        spectrum_weights`); interpolated in diameter like :meth:`radial_fluence`, a fit
        without its own spectrum counting with the energy's.
        """
        energy = np.stack([self.component(c)[1] for c in range(self.weights.shape[0])])
        if not any(r.spectrum_weights is not None for r in self.radial):
            return energy, ENERGY_SPECTRUM
        lo, hi, t, exact = self._neighbours(applicator)

        def own(r: RadialFluence) -> np.ndarray:
            return energy if r.spectrum_weights is None else r.spectrum_weights

        def name(r: RadialFluence) -> str:
            kind = "own" if r.spectrum_weights is not None else "of the energy"
            return f"{r.diameter_mm:g} mm {kind}"

        weights = (1 - t) * own(lo) + t * own(hi)
        if exact or hi is lo:
            how = (f"fitted for {lo.diameter_mm:g} mm {lo.bevel_deg:g} deg"
                   if lo.spectrum_weights is not None else ENERGY_SPECTRUM)
        else:
            how = (f"interpolated between {name(lo)} and {name(hi)} "
                   f"({lo.bevel_deg:g} deg)")
        return weights, how

    def beamlet_fluence(self, applicator: Applicator, beamlets: Beamlets) -> np.ndarray:
        """(C, N) electrons per component and beamlet (sum 1 over both axes)."""
        fluence, _how = self.radial_fluence(applicator)
        n = beamlets.count
        if fluence is None:
            shares = self.weights.sum(axis=1) / self.weights.sum()
            out = np.repeat(shares[:, None] / n, n, axis=1)
        else:
            centre = beamlets.corner_mm + 0.5 * (beamlets.side1_mm + beamlets.side2_mm)
            out = fluence.at(rim_distance_mm(applicator, beamlets), centre[:, 1])
        return out / out.sum()


@dataclass(frozen=True, eq=False)
class Beamlets:
    """Aperture beamlets in the applicator frame (mm).

    ``source_mm`` (3,) the virtual source; ``corner_mm``, ``side1_mm``, ``side2_mm`` (N, 3)
    one parallelogram per beamlet in the end-face plane.
    """

    source_mm: np.ndarray
    corner_mm: np.ndarray
    side1_mm: np.ndarray
    side2_mm: np.ndarray

    @property
    def count(self) -> int:
        """Number of beamlets."""
        return int(self.corner_mm.shape[0])


def aperture_beamlets(applicator: Applicator, virtual_ssd_mm: float, *,
                      beamlet_mm: float = BEAMLET_MM) -> Beamlets:
    """Square beamlets (side ``beamlet_mm`` seen along the beam) tiling the aperture.

    A beamlet is kept when its centre lies inside the aperture circle; every beamlet lies
    in the end face ``z = y tan(bevel)``, so sampled points are uniform across the beam's
    cross-section and start on the bevelled face.
    """
    r = applicator.radius_mm
    n = math.ceil(r / beamlet_mm)
    lo = -n * beamlet_mm + 0.5 * beamlet_mm
    centres = lo + beamlet_mm * np.arange(2 * n)
    cx, cy = np.meshgrid(centres, centres, indexing="ij")
    keep = applicator.inside_aperture(cx, cy)
    cx, cy = cx[keep], cy[keep]
    slope = applicator.slope
    x0 = cx - 0.5 * beamlet_mm
    y0 = cy - 0.5 * beamlet_mm
    corner = np.stack([x0, y0, y0 * slope], axis=1)
    side1 = np.tile([beamlet_mm, 0.0, 0.0], (cx.size, 1))
    side2 = np.tile([0.0, beamlet_mm, beamlet_mm * slope], (cx.size, 1))
    return Beamlets(np.array([0.0, 0.0, -float(virtual_ssd_mm)]), corner, side1, side2)


def _fallback(beam: ElectronBeam) -> SourceModel:
    machine = default_library().machine(beam.machine)
    energy = machine.energy(beam.energy_mev)
    e0 = E0_PER_R50_MEV_PER_MM * energy.points.r50_mm
    edges = np.linspace(e0 * (1 - 3 * FALLBACK_SIGMA), e0 * (1 + 3 * FALLBACK_SIGMA), 13)
    centres = 0.5 * (edges[1:] + edges[:-1])
    weights = np.exp(-0.5 * ((centres - e0) / (FALLBACK_SIGMA * e0)) ** 2)
    return SourceModel(beam.machine, float(beam.energy_mev), edges,
                       (weights / weights.sum())[None, :],
                       float(machine.virtual_source_distance_mm), (FALLBACK_SOURCE_SIGMA_MM,),
                       False, f"not commissioned: Gaussian spectrum around E0 = 2.33 MeV/cm x "
                              f"R50 = {e0:.2f} MeV (sigma {100 * FALLBACK_SIGMA:g} %)")


@lru_cache(maxsize=32)
def source_model(beam: ElectronBeam) -> SourceModel:
    """The source model of ``beam``'s machine and energy (fitted if shipped, else fallback).

    Raises
    ------
    InputError
        Unknown machine or energy, or a malformed ``mc_source.json``.
    """
    default_library().validate(beam)
    raw = read_beam_asset("mc_source.json")
    for entry in raw.get("models", []):
        if entry.get("machine") == beam.machine and math.isclose(
                float(entry.get("energy_mev", -1)), float(beam.energy_mev)):
            try:
                edges = np.asarray(entry["edges_mev"], dtype=np.float64)
                comps = entry["components"]
                weights = np.array([c["weights"] for c in comps], dtype=np.float64)
                sigma = np.array([c["source_sigma_mm"] for c in comps], dtype=np.float64)
                ssd = float(entry["virtual_ssd_mm"])
            except (KeyError, TypeError, ValueError) as exc:
                raise InputError(f"mc_source.json {beam.machine} {beam.energy_mev:g} MeV: "
                                 f"malformed entry ({exc})") from exc
            if (edges.ndim != 1 or weights.ndim != 2 or weights.shape[1] != edges.size - 1
                    or np.any(np.diff(edges) <= 0) or np.any(weights < 0)
                    or not weights.sum() > 0 or ssd <= 0 or np.any(sigma < 0)):
                raise InputError(f"mc_source.json {beam.machine} {beam.energy_mev:g} MeV: "
                                 "edges must increase, weights be one per bin and >= 0, "
                                 "virtual_ssd_mm > 0, source_sigma_mm >= 0")
            return SourceModel(beam.machine, float(beam.energy_mev), edges,
                               weights / weights.sum(), ssd, tuple(sigma), True,
                               str(raw.get("provenance", "")),
                               _radial_fits(entry, beam, weights.shape[0]))
    return _fallback(beam)


def _radial_fits(entry: dict, beam: ElectronBeam, components: int
                 ) -> tuple[RadialFluence, ...]:
    radial = entry.get("radial")
    if radial is None:
        return ()
    where = f"mc_source.json {beam.machine} {beam.energy_mev:g} MeV radial"
    try:
        nodes = tuple(float(e) for e in radial["nodes_mm"])
        fits = tuple(RadialFluence(float(a["diameter_mm"]), float(a["bevel_deg"]), nodes,
                                   np.asarray(a["fluence"], dtype=np.float64),
                                   _optional(a, "toe_fluence"),
                                   _optional(a, "spectrum_weights"),
                                   tuple(float(t) for t in a.get("inner_y", ())),
                                   _optional(a, "inner_fluence"))
                     for a in radial["applicators"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{where}: malformed entry ({exc}); expected nodes_mm and "
                         "applicators with diameter_mm, bevel_deg, fluence (optional "
                         "toe_fluence, inner_y and inner_fluence, spectrum_weights)") from exc
    if any(f.fluence.shape[0] != components for f in fits):
        raise InputError(f"{where}: one fluence row per component ({components}) needed")
    bins = len(entry.get("edges_mev", ())) - 1
    for f in fits:
        if (f.spectrum_weights is not None and bins > 0
                and f.spectrum_weights.shape[1] != bins):
            raise InputError(f"{where} {f.diameter_mm:g} mm {f.bevel_deg:g} deg: "
                             f"spectrum_weights need one weight per energy bin ({bins})")
    return fits


def _optional(entry: dict, key: str) -> np.ndarray | None:
    return None if entry.get(key) is None else np.asarray(entry[key], dtype=np.float64)
