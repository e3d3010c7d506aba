"""Commission the Monte Carlo source model to the pencil beam's water data (issue 16).

Method (``docs/montecarlo.md``): the water depth dose is linear in the weights of the
energy spectrum, so ompmc is run once per energy bin (a flat histogram over the bin) for
the 100 mm flat applicator in water, and non-negative least squares
(:func:`scipy.optimize.nnls`) fits the bin weights to the shipped commissioning depth
dose (``assets/beams/liac_kali_mc_curves.json``, the same data the pencil beam is
commissioned to). The angular spread is the machine's (``lateral_spread.sigma_theta_rad``
of ``assets/beams/liac.json``: a source blur of sigma_theta x virtual SSD), checked on the
profiles. The fitted source is then run, unchanged, for the other applicators and
compared with their data (R50/R90, surface dose, 1-D gamma 2 %/2 mm).

Writes ``assets/beams/mc_source.json`` (the source model with provenance: histories,
time, fit residual) and ``tests/data/mc/commissioning_mc.json`` (the Monte Carlo curves and
the comparison numbers of every applicator run).

Run: ``OMP_NUM_THREADS=2 python -m benchmarks.mc.commission_source [--energies 6 12]
[--cache DIR]`` (about 1 min per run on 2 free cores; 2 x 4 bins + 3 checks per energy).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy.optimize import nnls

from assets import asset_path
from models.beams.commissioning import read_beam_curves
from models.beams.library import ElectronBeam, default_library
from models.dose.montecarlo.engine import McOptions, build_phantom, run_phantom
from models.dose.montecarlo.source import SCATTER_SOURCE_SIGMA_MM, SourceModel
from models.dose.montecarlo.water import axis_radius_mm, compare_mc, mc_water_curves
from models.dose.water import water_phantom, water_pose
from models.patient.volume import Volume

ROOT = Path(__file__).resolve().parents[2]
OUT_CURVES = ROOT / "tests" / "data" / "mc" / "commissioning_mc.json"
OUT_SOURCE = ROOT / "assets" / "beams" / "mc_source.json"

MACHINE = "liac"
GRID_MM = 2.0
#: Energy-bin edges (MeV) per nominal energy.
BINS = {6.0: [3.8, 5.0, 5.7, 6.3, 6.9], 8.0: [5.0, 6.5, 7.3, 8.0, 8.7],
        12.0: [7.5, 9.5, 10.5, 11.3, 12.1]}
#: Histories of one run per applicator diameter (mm).
HISTORIES = {100.0: 40_000}
#: Histories of a check run with the fitted source.
CHECK_HISTORIES = 120_000
#: Applicators (diameter mm, bevel deg) checked with the fitted source, per energy.
CHECKS = {6.0: [(60.0, 0.0), (80.0, 0.0), (60.0, 30.0)], 8.0: [(70.0, 0.0)],
          12.0: [(60.0, 0.0), (80.0, 0.0), (60.0, 30.0)]}


def _water_run(beam: ElectronBeam, source: SourceModel, histories: int, cache: Path | None):
    key = (f"{beam.energy_mev:g}_{beam.applicator_diameter_mm:g}_{beam.bevel_deg:g}_"
           f"{source.edges_mev[0]:g}_{source.edges_mev[-1]:g}_{source.weights.shape[1]}_"
           f"{'-'.join(f'{s:g}' for s in source.source_sigma_mm)}_"
           f"{'-'.join(f'{w:.4f}' for w in source.weights[:, 0])}_{histories}")
    if cache is not None and (cache / f"{key}.npz").exists():
        z = np.load(cache / f"{key}.npz")
        return Volume(z["dose"], z["affine"]), int(z["n"]), float(z["s"])
    energy = default_library().machine(beam.machine).energy(beam.energy_mev)
    r = 0.5 * beam.applicator_diameter_mm
    ct = water_phantom(half_width_mm=r + 40.0, depth_mm=1.4 * energy.points.rp_mm + 20.0,
                       spacing_mm=GRID_MM)
    pose = water_pose(beam.bevel_deg)
    options = McOptions(grid_mm=GRID_MM, histories=histories)
    phantom = build_phantom(ct, pose, beam, options)
    dose, _unc, n, seconds = run_phantom(phantom, beam, source, options)
    volume = Volume(np.ascontiguousarray(dose.transpose(2, 1, 0)),
                    pose @ phantom.applicator_from_voxel)
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(cache / f"{key}.npz", dose=volume.array,
                            affine=volume.patient_from_voxel, n=n, s=seconds)
    print(f"  run {key}: {n} histories, {seconds:.0f} s", flush=True)
    return volume, n, seconds


def _axis_raw(volume: Volume, depth_mm: np.ndarray, radius_mm: float) -> np.ndarray:
    g = np.arange(-radius_mm, radius_mm + 1e-9, 1.0)
    gx, gy = np.meshgrid(g, g, indexing="ij")
    keep = gx ** 2 + gy ** 2 <= radius_mm ** 2
    off = np.stack([gx[keep], gy[keep]], axis=1)
    pts = np.concatenate([np.stack([np.full_like(depth_mm, ox), np.full_like(depth_mm, oy),
                                    depth_mm], axis=1) for ox, oy in off])
    return volume.sample(pts).reshape(len(off), depth_mm.size).mean(axis=0)


def commission_energy(energy: float, curves_by_key: dict, cache: Path | None) -> tuple:
    machine = default_library().machine(MACHINE)
    ssd = float(machine.virtual_source_distance_mm)
    sigma = float(machine.spread.sigma_theta_rad) * ssd
    edges = np.asarray(BINS[energy])
    ref = curves_by_key[(energy, 100.0, 0.0)]
    beam = ElectronBeam(MACHINE, energy, 100.0, 0.0)
    columns, volumes, hist, secs = [], [], 0, 0.0
    sigmas = (sigma, SCATTER_SOURCE_SIGMA_MM)
    for sig in sigmas:
        for lo, hi in itertools.pairwise(edges):
            src = SourceModel(MACHINE, energy, np.array([lo, hi]), np.array([[1.0]]), ssd,
                              (sig,), True, "energy bin")
            vol, n, s = _water_run(beam, src, HISTORIES[100.0], cache)
            volumes.append(vol)
            columns.append(_axis_raw(vol, ref.depth_mm, axis_radius_mm(100.0)))
            hist += n
            secs += s
    a = np.stack(columns, axis=1)
    weights, _ = nnls(a, ref.depth_dose_percent)
    fit = a @ weights
    residual = float(np.sqrt(np.mean((fit - ref.depth_dose_percent) ** 2)))
    weights = weights / weights.sum()
    combined = Volume(sum(w * v.array for w, v in zip(weights, volumes, strict=True)),
                      volumes[0].patient_from_voxel)
    weights = weights.reshape(len(sigmas), edges.size - 1)
    source = SourceModel(MACHINE, energy, edges, weights, ssd, sigmas, True, "fitted")
    results = [_result(ref, combined, hist, secs, "fit (spectrum bins combined)")]
    for diameter, bevel in CHECKS[energy]:
        data = curves_by_key[(energy, diameter, bevel)]
        b = ElectronBeam(MACHINE, energy, diameter, bevel)
        vol, n, s = _water_run(b, source, CHECK_HISTORIES, cache)
        results.append(_result(data, vol, n, s, "check (fitted source, unchanged)"))
    entry = {"machine": MACHINE, "energy_mev": energy,
             "edges_mev": [round(float(e), 4) for e in edges],
             "components": [{"role": role, "source_sigma_mm": round(float(sig), 3),
                             "weights": [round(float(w), 5) for w in weights[c]]}
                            for c, (role, sig) in enumerate(zip(
                                ("direct", "applicator wall scatter"), sigmas, strict=True))],
             "mean_energy_mev": round(float(source.mean_energy_mev), 3),
             "virtual_ssd_mm": ssd,
             "fit": {"applicator_mm": 100.0, "bevel_deg": 0.0,
                     "histories_per_bin": HISTORIES[100.0], "bins": int(weights.size),
                     "histories": hist, "time_s": round(secs, 1),
                     "depth_dose_rms_residual_percent": round(residual, 3)}}
    return entry, results


def _result(data, volume: Volume, histories: int, seconds: float, role: str) -> dict:
    mc = mc_water_curves(volume, data, grid_mm=GRID_MM)
    c = compare_mc(data, mc)
    return {"energy_mev": data.energy_mev, "diameter_mm": data.diameter_mm,
            "bevel_deg": data.bevel_deg, "role": role, "histories": histories,
            "time_s": round(seconds, 1),
            "d_r90_mm": round(c.d_r90_mm, 2), "d_r50_mm": round(c.d_r50_mm, 2),
            "d_surface_percent": round(c.d_surface_percent, 2),
            "gamma_depth_percent": round(c.gamma_depth_percent, 1),
            "gamma_x_percent": round(c.gamma_x_percent, 1),
            "gamma_y_percent": round(c.gamma_y_percent, 1),
            "passed_ranges_1mm": bool(abs(c.d_r90_mm) <= 1 and abs(c.d_r50_mm) <= 1),
            "passed_gamma_depth_95": bool(c.gamma_depth_percent >= 95.0),
            "curves": mc.as_json()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--energies", type=float, nargs="*", default=[12.0, 6.0])
    parser.add_argument("--cache", type=Path, default=None)
    args = parser.parse_args(argv)
    curves = {c.key: c for c in read_beam_curves(asset_path("beams",
                                                            "liac_kali_mc_curves.json"))}
    start = time.perf_counter()
    old = json.loads(OUT_SOURCE.read_text())
    models = {m["energy_mev"]: m for m in old.get("models", [])}
    old_curves = json.loads(OUT_CURVES.read_text()) if OUT_CURVES.exists() else {}
    results = [r for r in old_curves.get("results", [])
               if r["energy_mev"] not in args.energies]
    for energy in args.energies:
        entry, res = commission_energy(float(energy), curves, args.cache)
        models[float(energy)] = entry
        results.extend(res)
        for r in res:
            print(energy, r["diameter_mm"], r["bevel_deg"], r["role"][:5],
                  {k: r[k] for k in ("d_r90_mm", "d_r50_mm", "d_surface_percent",
                                     "gamma_depth_percent", "gamma_x_percent",
                                     "gamma_y_percent")}, flush=True)
        _write(models, results)
    print(f"done in {time.perf_counter() - start:.0f} s")
    return 0


def _write(models: dict, results: list) -> None:
    import ompmc

    now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d")
    source = {
        "kind": "monte_carlo_source",
        "provenance": (
            f"Fitted {now} by benchmarks/mc/commission_source.py with ompmc "
            f"{ompmc.__version__} (700icru PEGS4, ECUT 0.7 MeV, PCUT 0.01 MeV, 2 mm voxels) "
            "to the clinical-axis depth dose of the LIAC 100 mm flat applicator in "
            "assets/beams/liac_kali_mc_curves.json (Kali MC, penEasy/PENELOPE, MIT licence; "
            "the pencil beam's commissioning data): one run per energy bin, non-negative "
            "least squares on the bin weights of two components. Electrons leave a virtual point "
            "source at the machine's virtual source distance towards the aperture; the source "
            "is blurred in the aperture plane by sigma_theta x SSD (liac.json lateral_spread) "
            "for the direct beam and by 300 mm (about 0.5 rad) for the electrons scattered "
            "by the applicator wall. Checked "
            "unchanged on 60 and 80 mm flat and 60 mm 30 deg at 6 and 12 MeV and 70 mm flat at "
            "8 MeV (tests/data/mc/commissioning_mc.json)."),
        "models": [models[k] for k in sorted(models)]}
    OUT_SOURCE.write_text(json.dumps(source, indent=1) + "\n")
    OUT_CURVES.write_text(json.dumps({
        "description": "Monte Carlo (ompmc, fitted source model) in water against the "
                       "commissioning curves: curves on fine axes and comparison numbers",
        "grid_mm": GRID_MM, "axis_average_radius": "0.15 x diameter", "profile_band_mm": 4.0,
        "results": sorted(results, key=lambda r: (r["energy_mev"], r["bevel_deg"],
                                                  r["diameter_mm"]))}) + "\n")


if __name__ == "__main__":
    sys.exit(main())
