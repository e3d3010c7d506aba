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
from dataclasses import dataclass
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
        try:
            depth, dose = float(row[0]), float(row[1])
        except ValueError:
            raise InputError(f"{path}: row {number}: {','.join(row)!r} is not two numbers; "
                             "fix the value") from None
        if not (math.isfinite(depth) and math.isfinite(dose)):
            raise InputError(f"{path}: row {number}: NaN or infinite value; give a measured "
                             "number or remove the row")
        if dose < 0.0:
            raise InputError(f"{path}: row {number}: negative dose {dose:g}; doses must be >= 0")
        if depth < 0.0:
            raise InputError(f"{path}: row {number}: negative depth {depth:g} mm; depths must "
                             "be >= 0 mm")
        if depths and depth <= depths[-1]:
            raise InputError(f"{path}: row {number}: depth {depth:g} mm is not greater than the "
                             f"previous {depths[-1]:g} mm; sort the rows by increasing depth "
                             "without repeats")
        depths.append(depth)
        doses.append(dose)
    if len(depths) < 2:
        raise InputError(f"{path}: row {len(rows) + 1}: fewer than 2 data rows; add the "
                         "measured depths")
    dose_arr = np.asarray(doses)
    if not dose_arr.max() > 0.0:
        raise InputError(f"{path}: row 2: all doses are 0; give the measured doses")
    return np.asarray(depths), 100.0 * dose_arr / dose_arr.max()


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
    if not isinstance(value, (dict, list)) or indent + len(flat) <= 120:
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
