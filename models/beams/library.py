"""Electron beam data per machine and energy, loaded from ``assets/beams/<machine>.json``.

A machine file holds, with its provenance text: the energies, applicator diameters and bevel
angles on offer, the virtual source distance, lateral-spread parameters of the pencil-beam
model, the reference output (cGy/MU at the depth of maximum, reference applicator on
water), optional output factors (``output_factors``: a ``provenance`` whose ``kind`` is
``"measured"`` or ``"model"``, and a ``table`` of rows, each possibly ``"estimated": true``;
see :meth:`MachineData.output_factor_is_estimated`), and per energy the central-axis depth
dose in water of the
reference (flat) applicator, either as a measured table (``depth_mm`` / ``dose_percent``) or
as commissioning points from which :func:`models.beams.depth_dose.build_depth_dose` builds it.

Examples
--------
>>> lib = default_library()
>>> beam = ElectronBeam("liac", 12.0, 100.0)
>>> lib.validate(beam).energy(12.0).points.r50_mm
43.2
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import Field

from assets import asset_path
from models.base.errors import InputError
from models.base.files import read_json_file
from models.base.schema import FileSchema, bounded, check_file
from models.beams.depth_dose import DepthDosePoints, build_depth_dose

log = logging.getLogger(__name__)

#: Tolerance (MeV, mm, deg) when matching a requested value against the catalogue.
MATCH_TOL = 1e-6

#: Mean energy at the surface per mm of R50 (MeV/mm), IAEA TRS-398: E0 = 2.33 MeV/cm x R50.
E0_PER_R50_MEV_PER_MM = 0.233


@dataclass(frozen=True)
class ElectronBeam:
    """What the user chose: machine, nominal energy, applicator diameter and bevel.

    Parameters
    ----------
    machine : str
        Machine name, e.g. ``"liac"`` or ``"mobetron"`` (a file in ``assets/beams``).
    energy_mev : float
        Nominal energy (MeV), one of the machine's energies.
    applicator_diameter_mm : float
        Inner diameter of the circular applicator (mm).
    bevel_deg : float, default 0
        Bevel angle of the applicator end (deg), 0 for a flat end.
    """

    machine: str
    energy_mev: float
    applicator_diameter_mm: float
    bevel_deg: float = 0.0


@dataclass(frozen=True)
class LateralSpread:
    """Parameters of the pencil-beam lateral spread sigma(z) (Fermi-Eyges, Hogstrom 1981).

    ``sigma0_mm``: spread of a pencil at the applicator end; ``sigma_theta_rad``: rms angular
    spread (one projected axis) of the electrons leaving the applicator, growing sigma
    linearly with distance; ``scattering_energy_mev``: effective constant ``Es`` of the
    linear angular scattering power ``T = (Es / (p beta c))^2 / X0``.
    """

    sigma0_mm: float
    sigma_theta_rad: float
    scattering_energy_mev: float


@dataclass(frozen=True, eq=False)
class EnergyData:
    """Beam data of one nominal energy of one machine.

    ``depth_mm`` / ``dose_percent`` (shape (N,)) is the central-axis depth dose in water of
    the reference flat applicator, in % of its maximum; ``points`` the commissioning points
    (R90, R50, Rp, ...), measured from the curve when the file gives a table.
    """

    energy_mev: float
    depth_mm: np.ndarray
    dose_percent: np.ndarray
    points: DepthDosePoints

    @property
    def mean_energy_mev(self) -> float:
        """Mean energy at the surface E0 = 2.33 MeV/cm x R50 (IAEA TRS-398)."""
        return E0_PER_R50_MEV_PER_MM * self.points.r50_mm


@dataclass(frozen=True, eq=False)
class MachineData:
    """Beam data of one machine (see the module docstring for the file format)."""

    name: str
    description: str
    provenance: str
    energies: dict[float, EnergyData]
    applicator_diameters_mm: tuple[float, ...]
    bevels_deg: tuple[float, ...]
    reference_applicator_mm: float
    virtual_source_distance_mm: float
    reference_output_cgy_per_mu: float
    spread: LateralSpread
    output_factors: dict[tuple[float, float, float], float] = field(default_factory=dict)
    source: Path | None = None
    estimated_output_factors: frozenset[tuple[float, float, float]] = frozenset()
    output_factor_provenance: str = ""
    commissioned: dict[tuple[float, float, float], CommissionedBeam] = field(
        default_factory=dict)
    commissioning_provenance: str = ""

    @property
    def energies_mev(self) -> tuple[float, ...]:
        """Nominal energies on offer (MeV), increasing."""
        return tuple(sorted(self.energies))

    def energy(self, energy_mev: float) -> EnergyData:
        """Beam data of one energy; :class:`InputError` naming the valid energies otherwise."""
        return self.energies[_match(energy_mev, self.energies_mev,
                                    what=f"energy for machine {self.name!r}", unit="MeV")]

    def validate(self, beam: ElectronBeam) -> EnergyData:
        """Check energy, applicator and bevel of ``beam``; return the energy's data."""
        data = self.energy(beam.energy_mev)
        _match(beam.applicator_diameter_mm, self.applicator_diameters_mm,
               what=f"applicator diameter for machine {self.name!r}", unit="mm")
        _match(beam.bevel_deg, self.bevels_deg, what=f"bevel for machine {self.name!r}",
               unit="deg")
        return data

    def _output_factor_key(self, beam: ElectronBeam) -> tuple[float, float, float] | None:
        for key in self.output_factors:
            energy, diameter, bevel = key
            if (abs(energy - beam.energy_mev) < MATCH_TOL
                    and abs(diameter - beam.applicator_diameter_mm) < MATCH_TOL
                    and abs(bevel - beam.bevel_deg) < MATCH_TOL):
                return key
        return None

    def commissioned_beam(self, beam: ElectronBeam) -> CommissionedBeam | None:
        """Fitted pencil-beam parameters of ``beam`` (see :class:`CommissionedBeam`).

        An applicator the fit did not see is interpolated linearly in diameter between the
        fitted neighbours of the same energy and bevel (the parameters vary smoothly with
        the field size); None when the machine is not commissioned per applicator.
        """
        same = sorted((key[1], entry) for key, entry in self.commissioned.items()
                      if abs(key[0] - beam.energy_mev) < MATCH_TOL
                      and abs(key[2] - beam.bevel_deg) < MATCH_TOL)
        if not same:
            return None
        d = float(beam.applicator_diameter_mm)
        for diameter, entry in same:
            if abs(diameter - d) < MATCH_TOL:
                return entry
        below = [s for s in same if s[0] < d]
        above = [s for s in same if s[0] > d]
        if not below or not above:
            return (below or above)[-1 if below else 0][1]
        (d0, a), (d1, b) = below[-1], above[0]
        return interpolate_commissioned(a, b, (d - d0) / (d1 - d0), d)

    def output_factor(self, beam: ElectronBeam) -> float | None:
        """Tabulated output factor of ``beam`` relative to the reference applicator, or None."""
        key = self._output_factor_key(beam)
        return None if key is None else self.output_factors[key]

    def output_factor_is_estimated(self, beam: ElectronBeam) -> bool:
        """True when the output factor of ``beam`` is not measured (estimated or missing).

        MU computed with an estimated factor must be flagged or blocked by the caller.
        """
        key = self._output_factor_key(beam)
        return key is None or key in self.estimated_output_factors

    def output_factor_entry(self, beam: ElectronBeam) -> OutputFactor | None:
        """Output factor of ``beam`` with its provenance, or None when not tabulated."""
        key = self._output_factor_key(beam)
        if key is None:
            return None
        return OutputFactor(self.output_factors[key], key in self.estimated_output_factors,
                            self.output_factor_provenance)


@dataclass(frozen=True, eq=False)
class CommissionedBeam:
    """Pencil-beam parameters fitted to one energy/applicator/bevel (``commissioned`` block).

    ``depth_mm`` / ``dose_percent`` (N,): broad-beam (pencil) central-axis depth dose in
    water, % of its maximum; ``sigma_scale``: factor on the multiple-scattering spread;
    ``fluence_radius`` / ``fluence`` (K,): relative fluence against radius / aperture radius
    ``r``; ``fluence_tilt`` (K,): its heel-to-toe change, the pencil weight being
    ``fluence(r) + fluence_tilt(r) y / R`` (toe at +y); ``sigma0_mm``: the pencils'
    spread at the end face (None: the machine's ``lateral_spread``); ``halo_fraction``:
    weight of the broad applicator-scatter halo (``models.dose.electron.ElectronModel``).
    """

    energy_mev: float
    diameter_mm: float
    bevel_deg: float
    depth_mm: np.ndarray
    dose_percent: np.ndarray
    sigma_scale: float
    fluence_radius: np.ndarray
    fluence: np.ndarray
    fluence_tilt: np.ndarray | None = None
    sigma0_mm: float | None = None
    halo_fraction: float = 0.0


@dataclass(frozen=True)
class OutputFactor:
    """A tabulated output factor: ``value``, ``estimated`` (not measured), ``provenance``."""

    value: float
    estimated: bool
    provenance: str


def interpolate_commissioned(a: CommissionedBeam, b: CommissionedBeam, t: float,
                             diameter_mm: float) -> CommissionedBeam:
    """Parameters a fraction ``t`` of the way from ``a`` to ``b`` (same energy and bevel)."""
    depth = a.depth_mm if a.depth_mm[-1] <= b.depth_mm[-1] else b.depth_mm
    dose = ((1.0 - t) * np.interp(depth, a.depth_mm, a.dose_percent)
            + t * np.interp(depth, b.depth_mm, b.dose_percent))
    radius = np.union1d(a.fluence_radius, b.fluence_radius)
    fluence = ((1.0 - t) * np.interp(radius, a.fluence_radius, a.fluence)
               + t * np.interp(radius, b.fluence_radius, b.fluence))

    def tilt(e: CommissionedBeam) -> np.ndarray:
        values = e.fluence_tilt if e.fluence_tilt is not None else np.zeros_like(e.fluence)
        return np.interp(radius, e.fluence_radius, values)

    def sigma0(e: CommissionedBeam) -> float | None:
        return e.sigma0_mm

    s0 = (None if sigma0(a) is None or sigma0(b) is None
          else (1.0 - t) * a.sigma0_mm + t * b.sigma0_mm)
    return CommissionedBeam(a.energy_mev, diameter_mm, a.bevel_deg, depth, dose,
                            (1.0 - t) * a.sigma_scale + t * b.sigma_scale, radius, fluence,
                            (1.0 - t) * tilt(a) + t * tilt(b), s0,
                            (1.0 - t) * a.halo_fraction + t * b.halo_fraction)


class BeamLibrary:
    """All machines found in a directory of beam-data JSON files (default: shipped assets).

    Files without a top-level ``"machine"`` key (e.g. ``materials.json``) are skipped.
    """

    def __init__(self, directory: Path | str | None = None) -> None:
        self.directory = Path(directory) if directory is not None else asset_path("beams")
        self._machines: dict[str, MachineData] = {}
        for path in sorted(self.directory.glob("*.json")):
            raw = _read_json(path)
            if "machine" in raw:
                machine = _parse_machine(raw, path)
                self._machines[machine.name] = machine
        if not self._machines:
            raise InputError(f"no machine beam data (*.json with a 'machine' key) in "
                             f"{self.directory}")

    @property
    def machines(self) -> tuple[str, ...]:
        """Machine names, sorted."""
        return tuple(sorted(self._machines))

    def machine(self, name: str) -> MachineData:
        """Beam data of a machine; :class:`InputError` naming the valid machines otherwise."""
        if name not in self._machines:
            raise InputError(f"unknown machine {name!r}; choose one of: "
                             f"{', '.join(self.machines)}")
        return self._machines[name]

    def validate(self, beam: ElectronBeam) -> MachineData:
        """Check every field of ``beam`` against the catalogue; return its machine data."""
        if not isinstance(beam, ElectronBeam):
            raise TypeError(f"beam must be an ElectronBeam, got {type(beam).__name__}")
        machine = self.machine(beam.machine)
        machine.validate(beam)
        return machine


@lru_cache(maxsize=1)
def default_library() -> BeamLibrary:
    """The beam library shipped in ``assets/beams`` (loaded once)."""
    return BeamLibrary()


def _match(value: float, choices: tuple[float, ...], *, what: str, unit: str) -> float:
    """Return the catalogue entry equal to ``value`` or raise naming all choices."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    for choice in choices:
        if abs(choice - number) < MATCH_TOL:
            return choice
    listed = ", ".join(f"{c:g}" for c in choices)
    raise InputError(f"unknown {what}: {value!r} {unit}; choose one of: {listed} {unit}")


_Energy = Annotated[float, bounded(0.0, 50.0, "nominal energy (MeV)")]
_Diameter = Annotated[float, bounded(0.0, 300.0, "applicator diameter (mm)")]
_Bevel = Annotated[float, bounded(0.0, 90.0, "bevel angle (deg)", low_inclusive=True)]


class _SpreadFile(FileSchema):
    sigma0_mm: float = bounded(0.0, 50.0, "pencil spread at the applicator end (mm)")
    sigma_theta_rad: float = bounded(0.0, 1.0, "rms angular spread (rad)")
    scattering_energy_mev: float = bounded(0.0, 100.0, "scattering energy Es (MeV)")


class _OutputFactorRow(FileSchema):
    energy_mev: _Energy
    diameter_mm: _Diameter
    bevel_deg: _Bevel
    factor: float = bounded(0.0, 10.0, "output factor relative to the reference applicator")


class _OutputFactorsFile(FileSchema):
    provenance: str | dict[str, str] = ""
    table: list[_OutputFactorRow] = Field(default_factory=list)


_Depth = Annotated[float, bounded(0.0, 500.0, "depth in water (mm)", low_inclusive=True)]
_Percent = Annotated[float, bounded(0.0, 100.0, "dose (% of maximum)", low_inclusive=True)]


class _DepthDoseEntry(FileSchema):
    """Either commissioning points or a measured table (``depth_mm`` / ``dose_percent``)."""

    surface_percent: _Percent | None = None
    dmax_mm: _Depth | None = None
    r90_mm: _Depth | None = None
    r50_mm: _Depth | None = None
    rp_mm: _Depth | None = None
    bremsstrahlung_percent: _Percent | None = None
    depth_mm: list[_Depth] | None = None
    dose_percent: list[Annotated[float, bounded(0.0, 1e4, "dose (%)",
                                                low_inclusive=True)]] | None = None


class _CommissionedRow(FileSchema):
    """One fitted beam of ``commissioned.beams`` (written by ``iort beam commission``)."""

    energy_mev: _Energy
    diameter_mm: _Diameter
    bevel_deg: _Bevel
    depth_mm: list[_Depth] = Field(min_length=4)
    dose_percent: list[Annotated[float, bounded(0.0, 1e4, "dose (%)",
                                                low_inclusive=True)]] = Field(min_length=4)
    sigma_scale: float = bounded(0.0, 10.0, "scale of the scattering spread")
    fluence_radius: list[Annotated[float, bounded(0.0, 2.0, "radius / applicator radius",
                                                  low_inclusive=True)]] = Field(min_length=1)
    fluence: list[Annotated[float, bounded(0.0, 10.0, "relative fluence",
                                           low_inclusive=True)]] = Field(min_length=1)
    fluence_tilt: list[Annotated[float, bounded(-10.0, 10.0, "heel-to-toe fluence slope")]] \
        | None = None
    sigma0_mm: float | None = bounded(0.0, 50.0, "pencil spread at the applicator end (mm)",
                                      low_inclusive=True, default=None)
    halo_fraction: float = bounded(0.0, 1.0, "share of the wide halo", low_inclusive=True,
                                   default=0.0)


class _CommissionedFile(FileSchema):
    #: text, or entries of text (``earlier``: the provenance of rows kept from a refit)
    provenance: str | dict[str, str | dict[str, Any]] = ""
    beams: list[_CommissionedRow] = Field(default_factory=list)


class MachineFile(FileSchema):
    """Schema of a machine file (``assets/beams/<machine>.json``): units and ranges.

    The depth-dose entries are checked when their curves are built.
    """

    machine: str = Field(min_length=1)
    provenance: str
    description: str = ""
    energies_mev: list[_Energy] = Field(min_length=1)
    applicator_diameters_mm: list[_Diameter] = Field(min_length=1)
    bevels_deg: list[_Bevel] = Field(min_length=1)
    reference_applicator_mm: float = bounded(0.0, 300.0, "reference applicator diameter (mm)")
    virtual_source_distance_mm: float = bounded(0.0, 10_000.0, "virtual source distance (mm)")
    reference_output_cgy_per_mu: float = bounded(
        0.0, 100.0, "reference output at dmax, reference applicator on water (cGy/MU)")
    lateral_spread: _SpreadFile
    depth_dose: dict[str, _DepthDoseEntry]
    output_factors: _OutputFactorsFile = _OutputFactorsFile()
    commissioned: _CommissionedFile = _CommissionedFile()


def _read_json(path: Path) -> dict:
    raw = read_json_file(path, what="beam data file")
    if not isinstance(raw, dict):
        raise InputError(f"beam data file {path}: top level must be an object")
    return raw


def _field(raw: dict, key: str, path: Path):
    if key not in raw:
        raise InputError(f"beam data file {path}: missing field {key!r}")
    return raw[key]


def _parse_machine(raw: dict, path: Path) -> MachineData:
    """Build :class:`MachineData` from one parsed JSON file, checking every field."""
    from models.beams.depth_dose import analyse_depth_dose

    check_file(MachineFile, raw, source=f"beam data file {path}")
    for key in ("energies_mev", "applicator_diameters_mm", "bevels_deg"):
        values = [float(v) for v in raw[key]]
        if len(set(values)) != len(values):   # a repeat would be merged silently
            raise InputError(f"beam data file {path}: {key} lists a value twice "
                             f"({values}); list each once")
    name = str(_field(raw, "machine", path))
    spread_raw = _field(raw, "lateral_spread", path)
    try:
        spread = LateralSpread(float(spread_raw["sigma0_mm"]),
                               float(spread_raw["sigma_theta_rad"]),
                               float(spread_raw["scattering_energy_mev"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"beam data file {path}: lateral_spread needs sigma0_mm, "
                         f"sigma_theta_rad, scattering_energy_mev ({exc})") from exc
    energies: dict[float, EnergyData] = {}
    table = _field(raw, "depth_dose", path)
    for key in _field(raw, "energies_mev", path):
        energy = float(key)
        entry = table.get(f"{energy:g}")
        if entry is None:
            raise InputError(f"beam data file {path}: depth_dose has no entry "
                             f"'{energy:g}' for listed energy {energy:g} MeV")
        try:
            if "depth_mm" in entry:
                depth = np.asarray(entry["depth_mm"], dtype=np.float64)
                dose = np.asarray(entry["dose_percent"], dtype=np.float64)
                m = analyse_depth_dose(depth, dose)
                points = DepthDosePoints(m.surface_percent, m.dmax_mm, m.r90_mm, m.r50_mm,
                                         m.rp_mm, m.bremsstrahlung_percent)
                dose = 100.0 * dose / dose.max()
            else:
                points = DepthDosePoints(**{k: float(v) for k, v in entry.items()})
                depth, dose = build_depth_dose(points)
        except (TypeError, ValueError) as exc:
            raise InputError(f"beam data file {path}: depth_dose '{energy:g}': {exc}") from exc
        energies[energy] = EnergyData(energy, depth, dose, points)
    factors, estimated, of_provenance = _parse_output_factors(raw.get("output_factors", {}),
                                                              path)
    commissioned, c_provenance = _parse_commissioned(raw.get("commissioned", {}), path)
    try:
        return MachineData(
            name=name, description=str(raw.get("description", "")),
            provenance=str(_field(raw, "provenance", path)), energies=energies,
            applicator_diameters_mm=tuple(float(d) for d in
                                          _field(raw, "applicator_diameters_mm", path)),
            bevels_deg=tuple(float(b) for b in _field(raw, "bevels_deg", path)),
            reference_applicator_mm=float(_field(raw, "reference_applicator_mm", path)),
            virtual_source_distance_mm=float(_field(raw, "virtual_source_distance_mm", path)),
            reference_output_cgy_per_mu=float(_field(raw, "reference_output_cgy_per_mu",
                                                     path)),
            spread=spread, output_factors=factors, source=path,
            estimated_output_factors=frozenset(estimated),
            output_factor_provenance=of_provenance, commissioned=commissioned,
            commissioning_provenance=c_provenance)
    except (TypeError, ValueError) as exc:
        raise InputError(f"beam data file {path}: {exc}") from exc


def _parse_output_factors(block: dict, path: Path
                          ) -> tuple[dict[tuple[float, float, float], float],
                                     set[tuple[float, float, float]], str]:
    """Factors, the keys of estimated rows, and a provenance text from ``output_factors``.

    ``provenance`` is either a text (older files: every row counts as estimated) or an
    object whose ``kind`` is ``"measured"`` (rows estimated only where they say
    ``"estimated": true``) or ``"model"`` (every row estimated).
    """
    provenance = block.get("provenance", "")
    if isinstance(provenance, dict):
        kind = str(provenance.get("kind", ""))
        text = "; ".join(f"{k}: {v}" for k, v in provenance.items())
    else:
        kind, text = "", str(provenance)
    measured = kind == "measured"
    factors: dict[tuple[float, float, float], float] = {}
    estimated: set[tuple[float, float, float]] = set()
    for number, row in enumerate(block.get("table", []), start=1):
        try:
            key = (float(row["energy_mev"]), float(row["diameter_mm"]),
                   float(row["bevel_deg"]))
            value = float(row["factor"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"beam data file {path}: output_factors.table row {number} needs "
                             f"numbers energy_mev, diameter_mm, bevel_deg, factor "
                             f"({exc!r})") from exc
        if not (np.isfinite(value) and value > 0.0):
            raise InputError(f"beam data file {path}: output_factors.table row {number}: "
                             f"factor {value!r} must be a positive number")
        factors[key] = value
        if not measured or bool(row.get("estimated", False)):
            estimated.add(key)
    return factors, estimated, text


def _parse_commissioned(block: dict, path: Path
                        ) -> tuple[dict[tuple[float, float, float], CommissionedBeam], str]:
    """Per-applicator fitted parameters and a provenance text from ``commissioned``."""
    if not isinstance(block, dict) or not isinstance(block.get("beams", []), list):
        raise InputError(f"beam data file {path}: commissioned must be an object with a "
                         "'beams' list; re-run iort beam commission")
    provenance = block.get("provenance", "")
    text = ("; ".join(f"{k}: {v}" for k, v in provenance.items())
            if isinstance(provenance, dict) else str(provenance))
    out: dict[tuple[float, float, float], CommissionedBeam] = {}
    for number, row in enumerate(block.get("beams", []), start=1):
        try:
            entry = CommissionedBeam(
                float(row["energy_mev"]), float(row["diameter_mm"]), float(row["bevel_deg"]),
                np.asarray(row["depth_mm"], dtype=np.float64),
                np.asarray(row["dose_percent"], dtype=np.float64), float(row["sigma_scale"]),
                np.asarray(row["fluence_radius"], dtype=np.float64),
                np.asarray(row["fluence"], dtype=np.float64),
                np.asarray(row.get("fluence_tilt", np.zeros(len(row["fluence"]))),
                           dtype=np.float64),
                None if row.get("sigma0_mm") is None else float(row["sigma0_mm"]),
                float(row.get("halo_fraction", 0.0)))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InputError(f"beam data file {path}: commissioned.beams row {number} needs "
                             f"energy_mev, diameter_mm, bevel_deg, depth_mm, dose_percent, "
                             f"sigma_scale, fluence_radius, fluence ({exc!r})") from exc
        depth, dose = entry.depth_mm, entry.dose_percent
        if (depth.ndim != 1 or depth.shape != dose.shape or depth.size < 4
                or not np.all(np.diff(depth) > 0) or not np.all(np.isfinite(dose))
                or entry.fluence.shape != entry.fluence_radius.shape
                or entry.fluence_tilt.shape != entry.fluence_radius.shape
                or not np.all(np.isfinite(entry.fluence))):
            raise InputError(f"beam data file {path}: commissioned.beams row {number}: "
                             "depth_mm must increase, dose_percent match it, both finite; "
                             "fluence must match fluence_radius; re-run iort beam commission")
        out[(entry.energy_mev, entry.diameter_mm, entry.bevel_deg)] = entry
    return out, text


def read_machine_file(path: Path | str) -> MachineData:
    """Beam data of one machine file (e.g. a freshly commissioned copy), checked."""
    path = Path(path)
    raw = _read_json(path)
    if "machine" not in raw:
        raise InputError(f"beam data file {path}: no 'machine' key; is this a machine file?")
    return _parse_machine(raw, path)
