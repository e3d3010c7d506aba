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


@dataclass(frozen=True)
class OutputFactor:
    """A tabulated output factor: ``value``, ``estimated`` (not measured), ``provenance``."""

    value: float
    estimated: bool
    provenance: str


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
    provenance: str | dict[str, Any] = ""
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
            output_factor_provenance=of_provenance)
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
