"""Heterogeneity references from the ompmc Monte Carlo (issue "dose you can sign", item 4).

Each geometry is run twice with the same source, histories and seeds: once in water and once
with the heterogeneity; what the pencil-beam engine is compared against is the *relative*
effect (each code against its own water run).

Source: a broad electron field, 10 x 10 cm on the phantom surface from a point source at
SSD 100 cm (ompmc ``CollimatedSource``), energy spectrum a Gaussian around the mean surface
energy E0 = 2.33 MeV/cm * R50 of the shipped LIAC 100 mm commissioning depth dose (sigma 3 %
of E0). Phantom: water, 16 x 16 cm wide, 1 mm slabs in depth; scoring columns wider than a
voxel where the geometry is invariant (noted per case).

Cases (``tests/data/mc/heterogeneity_<case>.json``):

* ``slab_12mev``, ``slab_6mev``: 10 mm ICRP cortical bone (ICRPBONE700ICRU, 1.85 g/cm3) at
  10-20 mm depth across the whole phantom; clinical-axis depth dose (mean over
  |x| < 20 mm, |y| < 30 mm) -> R50/R90 shift.
* ``edge_12mev``: the same bone slab under the half x > 0 only; lateral profile along x
  through the axis at 24-26 mm depth (mean over |y| < 30 mm, 2 mm bins over |x| < 24 mm,
  2 mm slabs) -> hot and cold spots relative to the water maximum; 1.5e6 histories (the
  per-bin sigma is ~1 %; 3e5 left it at 2.2 %). ``edge_deep_12mev``: the same geometry with
  other seeds, scored at 30-32 mm (8e5 histories), to check at another depth a model fitted
  at 24-26 mm.
* ``disc_steel_12mev``, ``disc_lead_12mev``: a 3 mm metal disc
  (STEEL700ICRU 8.06 g/cm3 / PB700ICRU 11.34 g/cm3) across the
  phantom under 20 mm of water, 20 mm water behind it; backscatter = dose in the 1 mm just
  upstream of the disc against water at the same depth; transmission = dose in the 1 mm just
  downstream against water at the same depth (and the dose curve behind the disc).

Run: ``OMP_NUM_THREADS=1 python -m benchmarks.mc.heterogeneity [CASE ...] [--histories N]``
(each pair of runs takes 2-6 min on 2 cores at the default histories; the edge cases
15 and 10 min on one core).

Lead: the ompmc 0.4.0 release reads the XCOM photon cross sections and the Rayleigh form
factors of Z = 1-50 only (``MXELEMENT``, the per-medium element limit, also sized those
per-Z tables) and crashes on a lead medium (Z = 82). ``disc_lead_12mev`` was run with the
0.4.0 sdist patched by ``benchmarks/mc/ompmc-0.4.0-elements.patch`` (a separate constant
``MXZ = 100`` for the per-Z tables; nothing else changed). Reproduce: download the sdist
(``pip download --no-binary :all: --no-deps ompmc==0.4.0``), unpack it, apply the patch
with ``patch -p1`` inside it, ``pip install --target DIR .`` (a C compiler and CMake), and
run ``PYTHONPATH=DIR:. OMP_NUM_THREADS=1 python -m benchmarks.mc.heterogeneity
disc_lead_12mev``. With the same seeds the patched build reproduces the stock build's water
and steel doses bit for bit (checked at 2e3 histories).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from models.beams.depth_dose import analyse_depth_dose

OUT_DIR = Path(__file__).resolve().parents[2] / "tests" / "data" / "mc"

WATER = "H2O700ICRU"
BONE = "ICRPBONE700ICRU"
MEDIA_DENSITY = {WATER: 1.0, BONE: 1.85, "STEEL700ICRU": 8.06, "PB700ICRU": 11.34}

#: R50 (mm) of the shipped LIAC 100 mm flat commissioning depth doses.
LIAC_100MM_R50_MM = {6.0: 23.3, 12.0: 43.2}

SSD_CM = 100.0
HALF_FIELD_CM = 5.0
HALF_WIDTH_CM = 8.0
SEEDS = (97, 33)

#: Depth (cm) of the scored lateral profile of the edge cases: ``edge_12mev`` 24-26 mm,
#: ``edge_deep_12mev`` (same geometry, other seeds) 30-32 mm.
EDGE_PROFILE_DEPTH_CM = {"main": (2.4, 2.6), "deep": (3.0, 3.2)}


def _spectrum(ompmc, e0_mev: float):
    edges = np.linspace(0.85 * e0_mev, 1.15 * e0_mev, 31)
    centre = 0.5 * (edges[1:] + edges[:-1])
    weight = np.exp(-0.5 * ((centre - e0_mev) / (0.03 * e0_mev)) ** 2)
    return ompmc.Spectrum.from_histogram(edges[1:], weight, e_min=float(edges[0]))


def _seeds(case: str) -> tuple[int, int]:
    return (SEEDS[0] + 1, SEEDS[1]) if "deep" in case else SEEDS


def _bounds(case: str, depth_cm: float):
    y = np.array([-HALF_WIDTH_CM, -3.0, 3.0, HALF_WIDTH_CM])
    if case.startswith("edge"):
        # 2 mm bins where the edge acts (|x| < 24 mm), coarse elsewhere; 2 mm slabs:
        # every boundary costs transport steps, and only the 24-26 mm plane is scored
        x = np.concatenate([[-HALF_WIDTH_CM, -5.0, -3.6], np.arange(-2.4, 2.4001, 0.2),
                            [3.6, 5.0, HALF_WIDTH_CM]])
        z = np.round(np.arange(0.0, depth_cm + 1e-9, 0.2), 6)
        return x, y, z
    x = np.array([-HALF_WIDTH_CM, -5.0, -2.0, 2.0, 5.0, HALF_WIDTH_CM])
    z = np.round(np.arange(0.0, depth_cm + 1e-9, 0.1), 6)
    return x, y, z


def _phantom(case: str, x, y, z):
    shape = (x.size - 1, y.size - 1, z.size - 1)
    media = [WATER]
    material = np.ones(shape, dtype=np.int32)
    zc = 0.5 * (z[1:] + z[:-1])
    xc = 0.5 * (x[1:] + x[:-1])
    if case.startswith(("slab", "edge")):
        media.append(BONE)
        in_z = (zc > 1.0) & (zc < 2.0)
        in_x = xc > 0.0 if case.startswith("edge") else np.ones_like(xc, dtype=bool)
        material[np.ix_(in_x, np.ones(shape[1], dtype=bool), in_z)] = 2
    elif case.startswith("disc"):
        media.append("PB700ICRU" if "lead" in case else "STEEL700ICRU")
        in_z = (zc > 2.0) & (zc < 2.3)
        material[:, :, in_z] = 2
    density = np.ones(shape)
    for i, name in enumerate(media, start=1):
        density[material == i] = MEDIA_DENSITY[name]
    return media, np.asfortranarray(density), np.asfortranarray(material)


def _run(ompmc, case: str, water: bool, energy: float, histories: int):
    depth_cm = 8.0 if energy > 8 else 4.5
    x, y, z = _bounds(case, depth_cm)
    media, density, material = _phantom("water" if water else case, x, y, z)
    geometry = ompmc.Geometry(x, y, z, media, density, material)
    source = ompmc.CollimatedSource(SSD_CM, -HALF_FIELD_CM, HALF_FIELD_CM,
                                    -HALF_FIELD_CM, HALF_FIELD_CM)
    e0 = 2.33 * LIAC_100MM_R50_MM[energy] / 10.0
    t0 = time.perf_counter()
    dose, unc = ompmc.calc_cube(geometry, source, _spectrum(ompmc, e0),
                                ompmc.Physics(seeds=_seeds(case)), n_histories=histories,
                                n_batches=10, charge=-1)
    return dict(x=x, y=y, z=z, dose=dose, unc=unc, e0=e0,
                seconds=time.perf_counter() - t0)


def _column(run, x_sel, y_sel):
    d = run["dose"][np.ix_(x_sel, y_sel)]
    s = (run["dose"] * run["unc"])[np.ix_(x_sel, y_sel)]
    n = d.shape[0] * d.shape[1]
    mean = d.reshape(n, -1).mean(axis=0)
    sigma = np.sqrt((s.reshape(n, -1) ** 2).sum(axis=0)) / n
    return mean, sigma


def _centres(b):
    return 0.5 * (b[1:] + b[:-1])


def _depth_dose(run):
    xc, yc = _centres(run["x"]), _centres(run["y"])
    return _column(run, np.abs(xc) < 2.0, np.abs(yc) < 3.0)


def _r(z_mm, dd):
    m = analyse_depth_dose(z_mm, dd)
    return m.r50_mm, m.r90_mm


def _round(a, n=5):
    return [round(float(v), n) for v in np.asarray(a)]


def _slab_metrics(result: dict, z_mm, dd_w, dd_h) -> None:
    r50_w, r90_w = _r(z_mm, dd_w)
    r50_h, r90_h = _r(z_mm, dd_h)
    result["heterogeneity"] = {"medium": BONE, "density_g_cm3": 1.85,
                               "z_mm": [10.0, 20.0], "extent": "whole phantom"}
    result["metrics"] = {"r50_water_mm": round(r50_w, 2), "r50_mm": round(r50_h, 2),
                         "r50_shift_mm": round(r50_h - r50_w, 2),
                         "r90_water_mm": round(r90_w, 2), "r90_mm": round(r90_h, 2),
                         "r90_shift_mm": round(r90_h - r90_w, 2),
                         # 10 mm of bone acts like this much water (R50 shift + 10 mm)
                         "water_equivalent_thickness_mm": round(10.0 - (r50_h - r50_w), 2)}


def _edge_metrics(result: dict, wat: dict, het: dict) -> None:
    xc = _centres(wat["x"])
    yc = _centres(wat["y"])
    zc = _centres(wat["z"])
    z0_cm, z1_cm = EDGE_PROFILE_DEPTH_CM["deep" if "deep" in result["case"] else "main"]
    iz = (zc > z0_cm) & (zc < z1_cm)
    sel_x = np.abs(xc) < 2.4
    def prof(run):
        d = run["dose"][np.ix_(sel_x, np.abs(yc) < 3.0, iz)]
        s = (run["dose"] * run["unc"])[np.ix_(sel_x, np.abs(yc) < 3.0, iz)]
        n = d.shape[1] * d.shape[2]
        return d.mean(axis=(1, 2)), np.sqrt((s ** 2).sum(axis=(1, 2))) / n
    p_w, ps_w = prof(wat)
    p_h, ps_h = prof(het)
    # the water maximum of the profile plane is the reference (flat field: mean |x|<20mm)
    ref = float(p_w[np.abs(xc[sel_x]) < 2.0].mean())
    # the clinical-axis depth dose is not scored finely here (2 mm slabs)
    diff = (p_h - p_w) / ref
    result["heterogeneity"] = {"medium": BONE, "density_g_cm3": 1.85,
                               "z_mm": [10.0, 20.0], "extent": "x > 0 only"}
    result["profile_depth_mm"] = [10.0 * z0_cm, 10.0 * z1_cm]
    result["profile_x_mm"] = _round(10 * xc[sel_x], 2)
    result["profile_water"] = _round(p_w / ref)
    result["profile_water_sigma"] = _round(ps_w / ref)
    result["profile"] = _round(p_h / ref)
    result["profile_sigma"] = _round(ps_h / ref)
    result["profile_norm"] = ("fraction of the water profile's mean over |x| < 20 mm at "
                              "the same depth")
    inner = np.abs(xc[sel_x]) < 2.4
    result["metrics"] = {
        "hot_spot_percent": round(100 * float(diff[inner].max()), 2),
        "hot_spot_x_mm": round(float(10 * xc[sel_x][inner][np.argmax(diff[inner])]), 1),
        "cold_spot_percent": round(100 * float(diff[inner].min()), 2),
        "cold_spot_x_mm": round(float(10 * xc[sel_x][inner][np.argmin(diff[inner])]), 1),
        "sigma_percent": round(100 * float(np.hypot(ps_h, ps_w)[inner].mean() / ref), 2),
        "window_mm": [-24.0, 24.0]}


def _disc_metrics(result: dict, case: str, z_mm, dd_w, s_w, dd_h, s_h, norm) -> None:
    metal = "PB700ICRU" if "lead" in case else "STEEL700ICRU"
    up = int(np.searchsorted(z_mm, 20.0)) - 1          # 19-20 mm bin
    down = up + 4                                     # 23-24 mm bin
    result["heterogeneity"] = {"medium": metal, "density_g_cm3": MEDIA_DENSITY[metal],
                               "z_mm": [20.0, 23.0], "extent": "whole phantom"}
    result["metrics"] = {
        "backscatter_depth_mm": [19.0, 20.0],
        "backscatter_factor": round(float(dd_h[up] / dd_w[up]), 4),
        "backscatter_sigma": round(float(math.hypot(s_h[up] / dd_h[up],
                                                    s_w[up] / dd_w[up])
                                         * dd_h[up] / dd_w[up]), 4),
        "transmission_depth_mm": [23.0, 24.0],
        "transmission": round(float(dd_h[down] / dd_w[down]), 4),
        "transmission_of_water_max": round(float(dd_h[down] / norm), 4),
        "transmission_sigma": round(float(math.hypot(s_h[down] / max(dd_h[down], 1e-30),
                                                     s_w[down] / dd_w[down])
                                          * dd_h[down] / dd_w[down]), 4)}


def run_case(case: str, histories: int) -> dict:
    import ompmc

    energy = 6.0 if case.endswith("6mev") else 12.0
    het = _run(ompmc, case, False, energy, histories)
    wat = _run(ompmc, case, True, energy, histories)
    z_mm = 10.0 * _centres(wat["z"])
    result: dict = {
        "case": case,
        "code": f"ompmc {ompmc.__version__} (EGSnrc-derived class II condensed history), "
                f"700icru PEGS4 data, ECUT 0.7 MeV total, PCUT 0.01 MeV, seeds {_seeds(case)}",
        "source": {"kind": "point source behind a square opening on the surface",
                   "ssd_mm": SSD_CM * 10, "field_mm": [2 * HALF_FIELD_CM * 10] * 2,
                   "spectrum": f"Gaussian, mean {het['e0']:.3f} MeV, sigma 3 %, "
                               f"= 2.33 MeV/cm x R50 of the LIAC 100 mm {energy:g} MeV data",
                   "nominal_energy_mev": energy, "mean_energy_mev": round(het["e0"], 4)},
        "phantom": {"x_bounds_mm": _round(10 * wat["x"], 3),
                    "y_bounds_mm": _round(10 * wat["y"], 3),
                    "z_bounds_mm": [0.0, round(float(10 * wat["z"][-1]), 3)],
                    "z_step_mm": 1.0},
        "histories": histories,
        "batches": 10,
        "time_s": {"heterogeneous": round(het["seconds"], 1),
                   "water": round(wat["seconds"], 1)},
        "dose_unit": "fraction of the water run's maximum on the clinical axis "
                     "(dose to the local medium)",
        "created": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    dd_w, s_w = _depth_dose(wat)
    dd_h, s_h = _depth_dose(het)
    norm = float(dd_w.max())
    result["depth_mm"] = _round(z_mm, 2)
    result["depth_dose_water"] = _round(dd_w / norm)
    result["depth_dose_water_sigma"] = _round(s_w / norm)
    result["depth_dose"] = _round(dd_h / norm)
    result["depth_dose_sigma"] = _round(s_h / norm)
    result["depth_dose_columns_mm"] = {"x": [-20.0, 20.0], "y": [-30.0, 30.0]}
    if case.startswith("slab"):
        _slab_metrics(result, z_mm, dd_w, dd_h)
    elif case.startswith("edge"):
        _edge_metrics(result, wat, het)
    else:
        _disc_metrics(result, case, z_mm, dd_w, s_w, dd_h, s_h, norm)
    return result


CASES = {"slab_12mev": 500_000, "slab_6mev": 200_000, "disc_steel_12mev": 200_000,
         "edge_12mev": 1_500_000, "edge_deep_12mev": 800_000,
         "disc_lead_12mev": 200_000}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="*", default=[c for c in CASES if "lead" not in c])
    parser.add_argument("--histories", type=int, default=None)
    args = parser.parse_args(argv)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for case in args.cases:
        result = run_case(case, args.histories or CASES[case])
        path = OUT_DIR / f"heterogeneity_{case}.json"
        path.write_text(json.dumps(result, indent=1) + "\n")
        print(case, json.dumps(result["metrics"]), result["time_s"], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
