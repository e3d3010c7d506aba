"""Commissioning data readers: output factors, Monte Carlo dose in water, measured depth dose.

Three sources are read here, each checked strictly (bad input raises
:class:`models.base.errors.InputError` with one line naming the file and what to fix):

* Kali MC output-factor files ``OF_C<n>.npz`` (Hospital Gregorio Marañón, LIAC HWL; public
  repository ``radiofisica-hgugm/kali_mc``, MIT licence): key ``OFs``, a 4 x 4 array indexed
  ``[bevel, energy]`` with bevels 0, 15, 30, 45 deg and energies 6, 8, 10, 12 MeV, relative
  to the 100 mm flat applicator of the same energy. Applicator ``C<n>`` has an inner
  diameter of ``10 n`` mm.
* Kali MC 3D dose in water ``C<n>B<b>_<E>MeV.npz`` (penEasy/PENELOPE): key
  ``SpatialDoseDistrib`` holding a dict with ``X``, ``Y``, ``Z`` (cm, voxel centres, 3D
  grids) and ``Dose``; depth in water is ``-Z``, the clinical axis is ``x = y = 0``.
* A plain CSV depth-dose table with the header ``depth_mm,dose`` (measured PDD).

:func:`write_output_factors` writes output factors with their provenance into a machine's
beam-data JSON (the ``output_factors`` block read by :mod:`models.beams.library`).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.base.errors import InputError

log = logging.getLogger(__name__)

#: Bevels (deg) of the rows and energies (MeV) of the columns of a Kali MC ``OFs`` array.
KALI_BEVELS_DEG: tuple[float, ...] = (0.0, 15.0, 30.0, 45.0)
KALI_ENERGIES_MEV: tuple[float, ...] = (6.0, 8.0, 10.0, 12.0)

#: Inner diameter (mm) per unit of the Kali MC applicator number (``C<n>``: 10 n mm).
KALI_MM_PER_APPLICATOR_NUMBER = 10.0

#: Plausible range of an electron output factor relative to the reference applicator.
OUTPUT_FACTOR_RANGE = (0.3, 3.0)

#: Accepted names of the dose column of a depth-dose CSV (any unit: normalised to the maximum).
DOSE_COLUMNS = ("dose", "dose_percent", "dose_gy", "dose_cgy", "reading")

_APPLICATOR_RE = re.compile(r"C(\d+)", re.IGNORECASE)


@dataclass(frozen=True)
class OutputFactorRow:
    """One output factor: energy (MeV), applicator diameter (mm), bevel (deg), factor."""

    energy_mev: float
    diameter_mm: float
    bevel_deg: float
    factor: float

    def as_json(self) -> dict[str, float]:
        """Row in the format of ``output_factors.table`` of a beam-data file."""
        return {"energy_mev": self.energy_mev, "diameter_mm": self.diameter_mm,
                "bevel_deg": self.bevel_deg, "factor": self.factor}


@dataclass(frozen=True, eq=False)
class DoseGrid3D:
    """3D dose in water on a regular grid.

    ``x_mm`` (nx,), ``y_mm`` (ny,) lateral voxel centres, ``depth_mm`` (nz,) depth of the voxel
    centres (increasing), ``dose`` (nx, ny, nz) in arbitrary units.
    """

    x_mm: np.ndarray
    y_mm: np.ndarray
    depth_mm: np.ndarray
    dose: np.ndarray


def applicator_diameter_from_name(path: Path | str) -> float:
    """Applicator diameter (mm) from a Kali MC file name: ``OF_C5.npz`` -> 50 mm."""
    match = _APPLICATOR_RE.search(Path(path).stem)
    if match is None:
        raise InputError(f"{path}: cannot tell the applicator from the file name; expected "
                         "'C<n>' in it (e.g. OF_C5.npz for the 50 mm applicator)")
    return KALI_MM_PER_APPLICATOR_NUMBER * int(match.group(1))


def _load_npz(path: Path, key: str):
    try:
        with np.load(path, allow_pickle=True) as data:
            if key not in data.files:
                raise InputError(f"{path}: no array {key!r} (has: {', '.join(data.files)}); "
                                 "is this a Kali MC file?")
            return data[key]
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(f"{path}: cannot read npz ({exc})") from exc


def read_kali_output_factors(path: Path | str, diameter_mm: float | None = None
                             ) -> list[OutputFactorRow]:
    """Output factors of one applicator from a Kali MC ``OF_C<n>.npz`` file.

    Parameters
    ----------
    path : path-like
        The npz file.
    diameter_mm : float, optional
        Applicator diameter (mm); by default ``10 n`` from the ``C<n>`` in the file name.

    Returns
    -------
    list of OutputFactorRow
        16 rows, energies 6-12 MeV x bevels 0-45 deg, sorted by energy then bevel.
    """
    path = Path(path)
    diameter = applicator_diameter_from_name(path) if diameter_mm is None else float(diameter_mm)
    table = np.asarray(_load_npz(path, "OFs"), dtype=np.float64)
    shape = (len(KALI_BEVELS_DEG), len(KALI_ENERGIES_MEV))
    if table.shape != shape:
        raise InputError(f"{path}: 'OFs' has shape {table.shape}, expected {shape} "
                         "(bevels 0, 15, 30, 45 deg x energies 6, 8, 10, 12 MeV)")
    lo, hi = OUTPUT_FACTOR_RANGE
    bad = ~np.isfinite(table) | (table < lo) | (table > hi)
    if bad.any():
        b, e = (int(i) for i in np.argwhere(bad)[0])
        raise InputError(f"{path}: output factor {table[b, e]!r} at {KALI_ENERGIES_MEV[e]:g} MeV, "
                         f"bevel {KALI_BEVELS_DEG[b]:g} deg is outside {lo:g}-{hi:g}; fix the file")
    return [OutputFactorRow(energy, diameter, bevel, float(table[b, e]))
            for e, energy in enumerate(KALI_ENERGIES_MEV)
            for b, bevel in enumerate(KALI_BEVELS_DEG)]


def read_kali_output_factor_dir(directory: Path | str) -> list[OutputFactorRow]:
    """All ``OF_C*.npz`` files of a directory, sorted by energy, diameter and bevel."""
    directory = Path(directory)
    files = sorted(directory.glob("OF_C*.npz"))
    if not files:
        raise InputError(f"{directory}: no OF_C*.npz output-factor files")
    rows = [row for f in files for row in read_kali_output_factors(f)]
    return sorted(rows, key=lambda r: (r.energy_mev, r.diameter_mm, r.bevel_deg))


def read_kali_dose(path: Path | str) -> DoseGrid3D:
    """3D Monte Carlo dose in water from a Kali MC ``C<n>B<b>_<E>MeV.npz`` file.

    Depth is ``-Z`` (cm -> mm); axes are returned increasing (x, y, depth).
    """
    path = Path(path)
    raw = _load_npz(path, "SpatialDoseDistrib")
    data = raw[()] if isinstance(raw, np.ndarray) and raw.dtype == object else raw
    if not isinstance(data, dict) or not {"X", "Y", "Z", "Dose"} <= set(data):
        raise InputError(f"{path}: 'SpatialDoseDistrib' must be a dict with X, Y, Z, Dose")
    dose = np.asarray(data["Dose"], dtype=np.float64)
    grids = [np.asarray(data[k], dtype=np.float64) for k in ("X", "Y", "Z")]
    if dose.ndim != 3 or any(g.shape != dose.shape for g in grids):
        raise InputError(f"{path}: X, Y, Z and Dose must be 3D arrays of one shape, got "
                         f"{[g.shape for g in grids]} and {dose.shape}")
    if not (np.isfinite(dose).all() and all(np.isfinite(g).all() for g in grids)):
        raise InputError(f"{path}: NaN or infinite values in X, Y, Z or Dose")
    x = 10.0 * grids[0][:, 0, 0]
    y = 10.0 * grids[1][0, :, 0]
    depth = -10.0 * grids[2][0, 0, :]
    for name, axis in (("X", x), ("Y", y), ("Z", depth)):
        if axis.size > 1 and not (np.all(np.diff(axis) > 0) or np.all(np.diff(axis) < 0)):
            raise InputError(f"{path}: {name} is not a regular monotone grid axis")
    if x.size > 1 and x[1] < x[0]:
        x, dose = x[::-1], dose[::-1, :, :]
    if y.size > 1 and y[1] < y[0]:
        y, dose = y[::-1], dose[:, ::-1, :]
    if depth.size > 1 and depth[1] < depth[0]:
        depth, dose = depth[::-1], dose[:, :, ::-1]
    return DoseGrid3D(x, y, depth, np.ascontiguousarray(dose))


def _axis_weights(axis: np.ndarray, at: float) -> list[tuple[int, float]]:
    """Linear-interpolation indices and weights of ``at`` on an increasing ``axis``."""
    if axis.size == 1 or at <= axis[0]:
        return [(0, 1.0)]
    if at >= axis[-1]:
        return [(axis.size - 1, 1.0)]
    i = int(np.searchsorted(axis, at)) - 1
    t = (at - axis[i]) / (axis[i + 1] - axis[i])
    return [(i, 1.0 - t), (i + 1, t)]


def central_axis_depth_dose(grid: DoseGrid3D, x_mm: float = 0.0, y_mm: float = 0.0
                            ) -> tuple[np.ndarray, np.ndarray]:
    """Depth dose along the line (x, y) (default the clinical axis), in % of its maximum.

    Returns ``(depth_mm, dose_percent)``; the dose is bilinearly interpolated across the
    four voxel columns around the line.
    """
    line = np.zeros(grid.depth_mm.size)
    for i, wi in _axis_weights(grid.x_mm, x_mm):
        for j, wj in _axis_weights(grid.y_mm, y_mm):
            line += wi * wj * grid.dose[i, j, :]
    if not line.max() > 0.0:
        raise InputError(f"no dose on the line x = {x_mm:g} mm, y = {y_mm:g} mm")
    return grid.depth_mm.copy(), 100.0 * line / line.max()


def off_axis_profile(grid: DoseGrid3D, depth_mm: float, axis: str = "x"
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Lateral profile through the clinical axis at ``depth_mm``, in % of its central value.

    ``axis`` is ``"x"`` or ``"y"``; returns ``(position_mm, dose_percent)``.
    """
    if axis not in ("x", "y"):
        raise InputError(f"profile axis must be 'x' or 'y', got {axis!r}")
    plane = sum(w * grid.dose[:, :, k] for k, w in _axis_weights(grid.depth_mm, depth_mm))
    if axis == "x":
        positions = grid.x_mm
        profile = sum(w * plane[:, j] for j, w in _axis_weights(grid.y_mm, 0.0))
        centre = sum(w * profile[i] for i, w in _axis_weights(grid.x_mm, 0.0))
    else:
        positions = grid.y_mm
        profile = sum(w * plane[i, :] for i, w in _axis_weights(grid.x_mm, 0.0))
        centre = sum(w * profile[j] for j, w in _axis_weights(grid.y_mm, 0.0))
    if not centre > 0.0:
        raise InputError(f"no dose on the clinical axis at {depth_mm:g} mm depth")
    return positions.copy(), 100.0 * np.asarray(profile) / centre


def read_depth_dose_csv(path: Path | str) -> tuple[np.ndarray, np.ndarray]:
    """Measured depth dose from a CSV file with the header ``depth_mm,dose``.

    The dose column may also be named ``dose_percent``, ``dose_gy``, ``dose_cgy`` or
    ``reading``; it is normalised to its maximum.

    Depths must be in mm, strictly increasing, finite; doses finite and non-negative with a
    positive maximum. Every problem raises :class:`InputError` with one line naming the file,
    the row (1 = header) and what to fix.

    Returns
    -------
    depth_mm, dose_percent : numpy.ndarray
        Depths (mm) and dose in % of the maximum.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the depth-dose CSV ({exc})") from exc
    rows = list(csv.reader(lines))
    if not rows:
        raise InputError(f"{path}: empty file; expected a header 'depth_mm,dose' and rows")
    header = [h.strip().lower() for h in rows[0]]
    if (len(header) != 2 or header[1] not in DOSE_COLUMNS
            or not header[0].startswith("depth")):
        raise InputError(f"{path}: row 1: header {','.join(rows[0])!r}; expected 'depth_mm,dose'")
    if header[0] != "depth_mm":
        raise InputError(f"{path}: row 1: depth column {rows[0][0].strip()!r} is not in mm; "
                         "convert the depths to mm and name the column 'depth_mm'")
    depths: list[float] = []
    doses: list[float] = []
    for number, row in enumerate(rows[1:], start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != 2 or not row[0].strip() or not row[1].strip():
            raise InputError(f"{path}: row {number}: expected two values 'depth_mm,dose', got "
                             f"{','.join(row)!r}; fill in the missing depth or dose")
        depth, dose = _checked_point(f"{path}: row {number}", row, depths, "depth", "row")
        if depth < 0.0:
            raise InputError(f"{path}: row {number}: negative depth {depth:g} mm; depths must "
                             "be >= 0 mm")
        depths.append(depth)
        doses.append(dose)
    if len(depths) < 2:
        raise InputError(f"{path}: row {len(rows) + 1}: fewer than 2 data rows; add the "
                         "measured depths")
    dose_arr = np.asarray(doses)
    if not dose_arr.max() > 0.0:
        raise InputError(f"{path}: row 2: all doses are 0; give the measured doses")
    return np.asarray(depths), 100.0 * (dose_arr / dose_arr.max())


def write_output_factors(beam_json: Path | str, rows: list[OutputFactorRow], *,
                         source: str, licence: str, date: str, derived: str,
                         kind: str = "measured") -> list[tuple[float, float, float]]:
    """Write output factors with provenance into a machine's beam-data JSON file.

    Every (energy, diameter, bevel) combination the machine offers gets a row: the given
    value when ``rows`` has it, otherwise the value already in the file (or none) marked
    ``"estimated": true``, so that MU computed with it can be flagged. ``rows`` outside the
    machine's catalogue are rejected.

    Parameters
    ----------
    beam_json : path-like
        The machine file (e.g. ``assets/beams/liac.json``); rewritten in place.
    rows : list of OutputFactorRow
        Output factors to write.
    source, licence, date, derived : str
        Provenance: where the data come from, its licence notice, the date (ISO) it was
        taken, and what was derived from it.
    kind : str, default "measured"
        ``"measured"`` or ``"model"`` (model-derived values are all marked estimated).

    Returns
    -------
    list of tuple
        The (energy_mev, diameter_mm, bevel_deg) combinations marked estimated.
    """
    path = Path(beam_json)
    if kind not in ("measured", "model"):
        raise InputError(f"output-factor kind must be 'measured' or 'model', got {kind!r}")
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"beam data file {path}: cannot read JSON ({exc})") from exc
    try:
        energies = [float(e) for e in raw["energies_mev"]]
        diameters = [float(d) for d in raw["applicator_diameters_mm"]]
        bevels = [float(b) for b in raw["bevels_deg"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"beam data file {path}: needs energies_mev, applicator_diameters_mm "
                         f"and bevels_deg ({exc})") from exc
    given = {}
    for row in rows:
        key = (float(row.energy_mev), float(row.diameter_mm), float(row.bevel_deg))
        if key[0] not in energies or key[1] not in diameters or key[2] not in bevels:
            raise InputError(f"{path}: output factor for {key[0]:g} MeV, {key[1]:g} mm, bevel "
                             f"{key[2]:g} deg is not a combination this machine offers")
        given[key] = float(row.factor)
    old = {(float(r["energy_mev"]), float(r["diameter_mm"]), float(r["bevel_deg"])):
           float(r["factor"]) for r in raw.get("output_factors", {}).get("table", [])}
    table, estimated = [], []
    for energy in energies:
        for diameter in diameters:
            for bevel in bevels:
                key = (energy, diameter, bevel)
                entry = {"energy_mev": energy, "diameter_mm": diameter, "bevel_deg": bevel}
                if key in given and kind == "measured":
                    entry["factor"] = given[key]
                else:
                    value = given.get(key, old.get(key))
                    if value is None:
                        continue
                    entry["factor"] = value
                    entry["estimated"] = True
                    estimated.append(key)
                table.append(entry)
    raw["output_factors"] = {
        "provenance": {"kind": kind, "source": source, "licence": licence, "date": date,
                       "derived": derived,
                       "estimated_rows": "rows with \"estimated\": true are not measured; "
                                         "MU computed with them is flagged"},
        "table": table}
    path.write_text(_dump_beam_json(raw))
    if estimated:
        log.warning("%s: %d output factors are estimated (not in the data)", path,
                    len(estimated))
    return estimated


def _dump_beam_json(raw: dict) -> str:
    """JSON text with short lists and objects (e.g. one output-factor row) on one line."""
    return _format_json(raw, 0) + "\n"


def _format_json(value, indent: int) -> str:
    flat = json.dumps(value, ensure_ascii=False)
    numbers = isinstance(value, list) and all(isinstance(v, (int, float)) for v in value)
    if not isinstance(value, (dict, list)) or numbers or indent + len(flat) <= 120:
        return flat
    pad = " " * (indent + 2)
    if isinstance(value, dict):
        items = [f"{pad}{json.dumps(k, ensure_ascii=False)}: {_format_json(v, indent + 2)}"
                 for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    items = [pad + _format_json(v, indent + 2) for v in value]
    return "[\n" + ",\n".join(items) + "\n" + " " * indent + "]"


@dataclass(frozen=True)
class RangeReference:
    """Reference ranges of one flat applicator and energy (mm): Monte Carlo and measured."""

    energy_mev: float
    diameter_mm: float
    mc_r90_mm: float
    mc_r50_mm: float
    measured_r90_mm: float


def read_range_reference(path: Path | str | None = None) -> list[RangeReference]:
    """R90/R50 reference table (default: the shipped ``liac_kali_mc_ranges.json``).

    The table holds, per flat applicator and energy, R90 and R50 of the Kali MC penEasy
    central-axis depth dose and the measured R90 (see the file's provenance); it is for
    checking the pencil-beam model, not read by the dose engine.
    """
    from assets import asset_path

    path = Path(path) if path is not None else asset_path("beams", "liac_kali_mc_ranges.json")
    try:
        raw = json.loads(path.read_text())
        return [RangeReference(float(r["energy_mev"]), float(r["diameter_mm"]),
                               float(r["mc_r90_mm"]), float(r["mc_r50_mm"]),
                               float(r["measured_r90_mm"])) for r in raw["table"]]
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise InputError(f"range reference file {path}: cannot read it ({exc!r}); expected "
                         "'table' rows with energy_mev, diameter_mm, mc_r90_mm, mc_r50_mm, "
                         "measured_r90_mm") from exc


#: Depth (fraction of the curve's R50) of the two off-axis profiles kept per combination.
PROFILE_DEPTH_FRACTION_OF_R50 = 0.5

_KALI_DOSE_RE = re.compile(r"C(\d+)B(\d+)_(\d+)MeV", re.IGNORECASE)


@dataclass(frozen=True, eq=False)
class BeamCurves:
    """Water beam data of one energy/applicator/bevel: depth dose and two lateral profiles.

    Frames: water frame (surface ``z = 0``, +z = depth, clinical axis ``x = y = 0``; the
    bevel's toe towards +y). ``depth_mm`` (N,) and ``depth_dose_percent`` (N,) on the
    clinical axis in % of its maximum; ``profile_depth_mm`` the depth of the profiles,
    ``x_mm``/``profile_x_percent`` and ``y_mm``/``profile_y_percent`` lateral profiles in %
    of the clinical-axis value at that depth (empty when the data have none).
    ``voxel_mm`` (dx, dy, dz): size of the detector/voxel the values average over (0 for
    point values).
    """

    energy_mev: float
    diameter_mm: float
    bevel_deg: float
    depth_mm: np.ndarray
    depth_dose_percent: np.ndarray
    profile_depth_mm: float = float("nan")
    x_mm: np.ndarray = field(default_factory=lambda: np.zeros(0))
    profile_x_percent: np.ndarray = field(default_factory=lambda: np.zeros(0))
    y_mm: np.ndarray = field(default_factory=lambda: np.zeros(0))
    profile_y_percent: np.ndarray = field(default_factory=lambda: np.zeros(0))
    voxel_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @property
    def key(self) -> tuple[float, float, float]:
        """(energy_mev, diameter_mm, bevel_deg)."""
        return (self.energy_mev, self.diameter_mm, self.bevel_deg)

    def as_json(self) -> dict:
        """Row of a commissioning-curve file (rounded to 0.01 mm / 0.01 %)."""
        def r(a):
            return [round(float(v), 2) for v in a]
        return {"energy_mev": self.energy_mev, "diameter_mm": self.diameter_mm,
                "bevel_deg": self.bevel_deg, "voxel_mm": [round(v, 3) for v in self.voxel_mm],
                "depth_mm": r(self.depth_mm), "depth_dose_percent": r(self.depth_dose_percent),
                "profile_depth_mm": round(float(self.profile_depth_mm), 3),
                "x_mm": r(self.x_mm), "profile_x_percent": r(self.profile_x_percent),
                "y_mm": r(self.y_mm), "profile_y_percent": r(self.profile_y_percent)}

    @classmethod
    def from_json(cls, row: dict) -> BeamCurves:
        """Inverse of :meth:`as_json`."""
        def a(name):
            return np.asarray(row.get(name, []), dtype=np.float64)
        return cls(float(row["energy_mev"]), float(row["diameter_mm"]),
                   float(row["bevel_deg"]), a("depth_mm"), a("depth_dose_percent"),
                   float(row.get("profile_depth_mm", float("nan"))), a("x_mm"),
                   a("profile_x_percent"), a("y_mm"), a("profile_y_percent"),
                   tuple(float(v) for v in row.get("voxel_mm", (0.0, 0.0, 0.0))))


def kali_beam_curves(path: Path | str) -> BeamCurves:
    """Clinical-axis depth dose and x/y profiles at half R50 of a Kali MC dose file.

    Axes are turned into the water frame of :mod:`models.dose.water` (bevel toe towards
    +y, the beam axis leaning towards +y): Kali MC bevels along its x axis with the beam
    leaning towards +x, so water ``x = Kali y`` and ``y = Kali x``.

    The energy, applicator and bevel come from the name ``C<n>B<b>_<E>MeV.npz``; the values
    are those of the voxels on the clinical axis (the central voxel column and the central
    row/column of the profile plane, interpolated linearly in depth for the profiles).
    """
    path = Path(path)
    match = _KALI_DOSE_RE.search(path.stem)
    if match is None:
        raise InputError(f"{path}: cannot tell applicator, bevel and energy from the name; "
                         "expected 'C<n>B<bevel>_<E>MeV.npz'")
    grid = read_kali_dose(path)
    depth, pdd = central_axis_depth_dose(grid)
    from models.beams.depth_dose import analyse_depth_dose

    r50 = analyse_depth_dose(depth, pdd).r50_mm
    at = PROFILE_DEPTH_FRACTION_OF_R50 * r50
    # Kali MC bevels along its x with the beam leaning to +x: water x = Kali y, y = Kali x
    x, px = off_axis_profile(grid, at, "y")
    y, py = off_axis_profile(grid, at, "x")
    voxel = tuple(float(abs(a[1] - a[0])) if a.size > 1 else 0.0
                  for a in (grid.y_mm, grid.x_mm, grid.depth_mm))
    return BeamCurves(float(match.group(3)), KALI_MM_PER_APPLICATOR_NUMBER * int(match.group(1)),
                      float(match.group(2)), depth, pdd, at, x, px, y, py, voxel)


def read_kali_beam_curves_dir(directory: Path | str) -> list[BeamCurves]:
    """Beam curves of every ``C*/B*/C*B*_*MeV.npz`` (or flat ``C*B*_*MeV.npz``) under a folder."""
    directory = Path(directory)
    files = sorted(directory.rglob("C*B*_*MeV.npz"))
    if not files:
        raise InputError(f"{directory}: no Kali MC dose files C<n>B<b>_<E>MeV.npz; give the "
                         "kali_mc/data/sim folder")
    curves = [kali_beam_curves(f) for f in files]
    return sorted(curves, key=lambda c: c.key)


def write_beam_curves(path: Path | str, curves: list[BeamCurves], *, provenance: dict) -> None:
    """Write commissioning curves (compact derived tables) with their provenance as JSON."""
    raw = {"description": "Water beam data (clinical-axis depth dose and two lateral "
                          "profiles) per energy, applicator and bevel; see provenance.",
           "provenance": provenance, "curves": [c.as_json() for c in curves]}
    Path(path).write_text(_dump_beam_json(raw))


def read_beam_curves(path: Path | str) -> list[BeamCurves]:
    """Commissioning curves written by :func:`write_beam_curves`."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
        return [BeamCurves.from_json(row) for row in raw["curves"]]
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise InputError(f"commissioning curve file {path}: cannot read it ({exc!r}); "
                         "expected 'curves' rows with energy_mev, diameter_mm, bevel_deg, "
                         "depth_mm, depth_dose_percent") from exc


#: PTW .mcc curve types read as a depth dose or as a lateral profile along x / y.
MCC_DEPTH_TYPES = ("PDD",)
MCC_PROFILE_AXES = {"CROSSPLANE_PROFILE": "x", "INPLANE_PROFILE": "y"}


def read_mcc(path: Path | str, *, energy_mev: float, diameter_mm: float,
             bevel_deg: float = 0.0) -> BeamCurves:
    """Water-tank scans of one beam from a PTW ``.mcc`` text file (mm, any dose unit).

    The file holds ``BEGIN_SCAN n`` ... ``END_SCAN n`` blocks, each with ``KEY=VALUE``
    lines (``SCAN_CURVETYPE`` = ``PDD``, ``CROSSPLANE_PROFILE`` (x) or ``INPLANE_PROFILE``
    (y); ``SCAN_DEPTH`` in mm for profiles) and a ``BEGIN_DATA`` ... ``END_DATA`` table
    whose first two columns are position (mm) and dose. One PDD is required; profiles are
    optional (the first depth that has one is used). Positions must be finite and strictly
    increasing, doses finite and non-negative; every problem raises :class:`InputError`
    naming the file, the line and what to fix.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8-sig", errors="strict").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the .mcc file ({exc})") from exc
    scans = _mcc_scans(path, lines)
    depth = [s for s in scans if s["type"] in MCC_DEPTH_TYPES]
    if not depth:
        raise InputError(f"{path}: no scan with SCAN_CURVETYPE=PDD; add the depth dose")
    z, dz = depth[0]["data"]
    profiles: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    profile_depth = float("nan")
    for scan in scans:
        axis = MCC_PROFILE_AXES.get(scan["type"])
        if axis is None or axis in profiles:
            continue
        if not math.isfinite(scan["depth"]):
            raise InputError(f"{path}: line {scan['line']}: profile scan without SCAN_DEPTH; "
                             "give the depth (mm) it was measured at")
        if profiles and abs(scan["depth"] - profile_depth) > 1e-6:
            continue
        profile_depth = scan["depth"]
        pos, val = scan["data"]
        centre = float(np.interp(0.0, pos, val))
        if not centre > 0.0:
            raise InputError(f"{path}: line {scan['line']}: profile has no dose at 0 mm; "
                             "centre the profile on the clinical axis")
        profiles[axis] = (pos, 100.0 * (val / centre))
    empty = (np.zeros(0), np.zeros(0))
    x, px = profiles.get("x", empty)
    y, py = profiles.get("y", empty)
    return BeamCurves(float(energy_mev), float(diameter_mm), float(bevel_deg), z,
                      100.0 * (dz / dz.max()), profile_depth, x, px, y, py)


def _mcc_scans(path: Path, lines: list[str]) -> list[dict]:
    """Scans of an .mcc file: type, depth (mm), data (positions, doses), first line."""
    scans: list[dict] = []
    scan: dict | None = None
    rows: list[tuple[int, str]] | None = None
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if line.startswith("BEGIN_SCAN") and not line.startswith("BEGIN_SCAN_DATA"):
            scan = {"type": "", "depth": float("nan"), "line": number, "data": None}
        elif line.startswith("END_SCAN") and not line.startswith("END_SCAN_DATA"):
            if scan is None or scan["data"] is None:
                raise InputError(f"{path}: line {number}: scan without BEGIN_DATA/END_DATA "
                                 "table; add the measured points")
            scans.append(scan)
            scan = None
        elif scan is None:
            continue
        elif line == "BEGIN_DATA":
            rows = []
        elif line == "END_DATA":
            scan["data"] = _mcc_table(path, rows or [], number)
            rows = None
        elif rows is not None:
            rows.append((number, line))
        elif "=" in line:
            key, value = (part.strip() for part in line.split("=", 1))
            _mcc_field(path, number, scan, key, value)
    if scan is not None:
        raise InputError(f"{path}: line {len(lines)}: scan starting at line {scan['line']} "
                         "has no END_SCAN; the file is cut short")
    return scans


def _mcc_field(path: Path, number: int, scan: dict, key: str, value: str) -> None:
    if key == "SCAN_CURVETYPE":
        scan["type"] = value.upper()
    elif key == "SCAN_DEPTH":
        try:
            depth = float(value)
        except ValueError:
            raise InputError(f"{path}: line {number}: SCAN_DEPTH={value!r} is not a number "
                             "in mm") from None
        if not (math.isfinite(depth) and depth >= 0.0):
            raise InputError(f"{path}: line {number}: SCAN_DEPTH={value!r} is not a depth "
                             "in water (finite, >= 0 mm)")
        scan["depth"] = depth
    elif key in ("UNIT", "DEPTH_UNIT", "SCAN_UNIT") and value.lower() not in ("mm", ""):
        raise InputError(f"{path}: line {number}: {key}={value!r}; positions must be in mm "
                         "(convert the file or export it in mm)")


def _checked_point(where: str, cells: list[str], previous: list[float], position: str,
                   unit: str) -> tuple[float, float]:
    """(position mm, dose) of one table row of a commissioning file, checked: two finite
    numbers, a dose >= 0, positions increasing without repeats; ``where`` names file and
    row, ``unit`` is "row" or "line" (what to remove)."""
    try:
        pos, dose = float(cells[0]), float(cells[1])
    except ValueError:
        raise InputError(f"{where}: {','.join(cells)!r} is not two numbers; fix the "
                         "value") from None
    if not (math.isfinite(pos) and math.isfinite(dose)):
        raise InputError(f"{where}: NaN or infinite value; give a measured number or remove "
                         f"the {unit}")
    if dose < 0.0:
        raise InputError(f"{where}: negative dose {dose:g}; doses must be >= 0")
    if previous and pos <= previous[-1]:
        raise InputError(f"{where}: {position} {pos:g} mm is not greater than the previous "
                         f"{previous[-1]:g} mm; sort the {unit}s by increasing {position} "
                         "without repeats")
    return pos, dose


def _mcc_table(path: Path, rows: list[tuple[int, str]], end_line: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """Position (mm) and dose columns of one BEGIN_DATA/END_DATA table, checked."""
    pos: list[float] = []
    val: list[float] = []
    for number, line in rows:
        if not line:
            continue
        cells = line.replace(",", " ").split()
        if len(cells) < 2:
            raise InputError(f"{path}: line {number}: expected position and dose, got "
                             f"{line!r}; fill in the missing value")
        p, d = _checked_point(f"{path}: line {number}", cells, pos, "position", "line")
        pos.append(p)
        val.append(d)
    if len(pos) < 4:
        raise InputError(f"{path}: line {end_line}: fewer than 4 points in the scan; add the "
                         "measured points")
    dose = np.asarray(val)
    if not dose.max() > 0.0:
        raise InputError(f"{path}: line {end_line}: all doses are 0; give the measured doses")
    return np.asarray(pos), dose


def csv_beam_curves(path: Path | str, *, energy_mev: float, diameter_mm: float,
                    bevel_deg: float = 0.0) -> BeamCurves:
    """A measured depth dose from a CSV (:func:`read_depth_dose_csv`) as beam curves."""
    depth, dose = read_depth_dose_csv(path)
    return BeamCurves(float(energy_mev), float(diameter_mm), float(bevel_deg), depth, dose)
