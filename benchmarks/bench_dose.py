"""Dose engine speed on the built-in phantom.

Times are wall times with the engine's one helper thread (models.base.beside: the lateral
redistribution, a third of the CT sampling and a share of the spreading run on it; the
numba kernels themselves are serial); the ``*_cpu_ms`` keys are the CPU time of both
threads together, about what the same call takes on one core.

Keys
----
dose.electron_ms               full 3D heterogeneous electron dose, 100 mm applicator,
                               12 MeV, 2 mm grid, on the phantom at the planned pose
                               (warm, best of repeats, the pose nudged each call), ms
dose.electron_cpu_ms           CPU time of the same call (process time, both threads, best of
                               repeats): about one core's time; the number to read on a loaded
                               shared machine, ms
dose.electron_numpy_ms         the same with the plain-numpy twins of the kernels, ms
dose.electron_ratio_vs_numpy   numpy time / numba time in the same run
dose.electron_exact_ms         numba, pencils spread one by one (reference kernel), ms
dose.electron_ms_grid_<h>mm    scaling with the grid spacing h (3, 2, 1.5, 1 mm), ms
dose.electron_voxels_grid_<h>mm number of dose voxels at that spacing
dose.electron_worst_ms         the worst clinical case: 120 mm applicator, 45 deg bevel, 12 MeV,
                               2 mm grid, same pose nudging, ms
dose.electron_worst_cpu_ms     CPU time of the same call, ms
dose.electron_preview_ms / dose.electron_worst_preview_ms
                               the same two beams with model="preview" (the dragging preview:
                               same physics on a 4 mm grid), ms
dose.commissioning_pass_percent share (%) of the LIAC combinations whose model meets every
                               water criterion (|dR90|, |dR50| <= 1 mm, surface <= 2 %, gamma
                               2 %/2 mm >= 95 % on the depth dose and two profiles) against
                               the shipped derived Kali MC curves
                               (assets/beams/liac_kali_mc_curves.json)
dose.commissioning_worst_abs_dr50_mm / _dr90_mm, dose.commissioning_min_gamma_percent
                               the worst combination's numbers
dose.mu_error_percent_max      max |MU - MU from the measured output factor| / MU (%) over
                               every LIAC combination (the measured factors read straight from
                               the machine file's table)
dose.kv_ms                     kV spherical applicator 30 mm, 2 mm grid, 40 mm reach, ms
dose.warmup_s                  kernel warm-up (compile or load from numba's cache), s
"""

from __future__ import annotations

import time

import numpy as np

from assets import asset_path
from benchmarks import best_time_s
from models.beams.library import ElectronBeam
from models.dose.electron import compute_electron_dose
from models.dose.engine import warm_up
from models.dose.kv import compute_kv_dose
from models.patient.phantom import make_phantom, planned_patient_from_applicator

GROUP = "dose"

#: Shipped derived water curves of the LIAC (Kali MC) the commissioning is checked against.
CURVES_FILE = "liac_kali_mc_curves.json"


def run(*, quick: bool = False) -> dict[str, float]:
    """Time the electron and kV kernels on the phantom (smaller repeats with ``quick``)."""
    results: dict[str, float] = {"dose.warmup_s": warm_up()}
    case = make_phantom(spacing_mm=(3.0, 3.0, 4.0)) if quick else make_phantom()
    pose = planned_patient_from_applicator(case)
    beam = ElectronBeam("liac", 12.0, 100.0)
    repeat = 3 if quick else 7
    counter = [0]

    def nudged() -> np.ndarray:
        counter[0] += 1
        moved = pose.copy()
        moved[:3, 3] += 0.3 * np.array([np.sin(counter[0]), np.cos(counter[0]), 0.0])
        return moved

    def electron(backend: str = "numba", grid_mm: float = 2.0, fast: bool = True) -> object:
        return compute_electron_dose(case.ct, nudged(), beam, grid_mm=grid_mm, backend=backend,
                                     fast=fast)

    numba_s = best_time_s(electron, repeat=repeat)
    cpu_s = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        electron()
        cpu_s = min(cpu_s, time.process_time() - start)
    results["dose.electron_cpu_ms"] = 1000.0 * cpu_s
    numpy_s = best_time_s(lambda: electron("numpy"), repeat=2 if quick else 3)
    results["dose.electron_ms"] = 1000.0 * numba_s
    results["dose.electron_numpy_ms"] = 1000.0 * numpy_s
    results["dose.electron_ratio_vs_numpy"] = numpy_s / numba_s
    results["dose.electron_exact_ms"] = 1000.0 * best_time_s(
        lambda: electron(fast=False), repeat=2 if quick else 3)
    for grid_mm in ((3.0, 2.0) if quick else (3.0, 2.0, 1.5, 1.0)):
        seconds = best_time_s(lambda g=grid_mm: electron(grid_mm=g), repeat=2 if quick else 3)
        label = f"{grid_mm:g}".replace(".", "p")
        results[f"dose.electron_ms_grid_{label}mm"] = 1000.0 * seconds
        results[f"dose.electron_voxels_grid_{label}mm"] = float(electron(grid_mm=grid_mm)
                                                                .dose.array.size)
    worst = ElectronBeam("liac", 12.0, 120.0, 45.0)
    results["dose.electron_worst_ms"] = 1000.0 * best_time_s(
        lambda: compute_electron_dose(case.ct, nudged(), worst, grid_mm=2.0), repeat=repeat)
    worst_cpu = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        compute_electron_dose(case.ct, nudged(), worst, grid_mm=2.0)
        worst_cpu = min(worst_cpu, time.process_time() - start)
    results["dose.electron_worst_cpu_ms"] = 1000.0 * worst_cpu
    for key, b in (("dose.electron_preview_ms", beam), ("dose.electron_worst_preview_ms", worst)):
        results[key] = 1000.0 * best_time_s(
            lambda b=b: compute_electron_dose(case.ct, nudged(), b, model="preview"),
            repeat=repeat)
    results.update(commissioning_results())
    results["dose.mu_error_percent_max"] = mu_error_percent_max()
    kv_pose = pose.copy()
    kv_pose[:3, 3] = pose[:3, 3] + pose[:3, 2] * 20.0      # sphere 20 mm into the tumour bed
    results["dose.kv_ms"] = 1000.0 * best_time_s(
        lambda: compute_kv_dose(case.ct, kv_pose, 30.0, grid_mm=2.0), repeat=repeat)
    return results


def commissioning_results() -> dict[str, float]:
    """Model against the shipped derived LIAC water curves (all combinations)."""
    from models.beams.commissioning import read_beam_curves
    from models.dose.commission import check_beam, pass_percent

    checks = [check_beam(c)[0] for c in read_beam_curves(asset_path("beams",
                                                                    CURVES_FILE))]
    return {"dose.commissioning_pass_percent": pass_percent(checks),
            "dose.commissioning_worst_abs_dr50_mm": max(abs(c.d_r50_mm) for c in checks),
            "dose.commissioning_worst_abs_dr90_mm": max(abs(c.d_r90_mm) for c in checks),
            "dose.commissioning_min_gamma_percent": min(
                min(c.gamma_depth_percent, c.gamma_x_percent, c.gamma_y_percent)
                for c in checks)}


def mu_error_percent_max() -> float:
    """Largest MU error (%) against the measured output factors of the machine file."""
    from models.base.files import read_json_file
    from models.beams.library import default_library
    from models.dose.electron import monitor_units

    path = asset_path("beams", "liac.json")
    machine = default_library().machine("liac")
    worst = 0.0
    for row in read_json_file(path, what="beam data file")["output_factors"]["table"]:
        beam = ElectronBeam("liac", row["energy_mev"], row["diameter_mm"], row["bevel_deg"])
        dmax_gy = 10.0 / 0.9
        _, mu, _ = monitor_units(machine, beam, dmax_gy)
        expected = dmax_gy * 100.0 / (machine.reference_output_cgy_per_mu * row["factor"])
        worst = max(worst, 100.0 * abs(mu - expected) / expected)
    return worst
