"""Robustness sweep throughput on Dask at 1 and 2 local workers.

Keys
----
``sweep.samples_per_s_1w``, ``sweep.samples_per_s_2w``
    Sampled poses (dose + DVH of the target and organs) per second on a LocalCluster of 1
    and 2 worker processes (one thread each), after a warm-up sweep on the same cluster
    (kernels loaded, case scattered); the phantom at its default grid (coarse with
    ``quick``), liac 8 MeV / 70 mm, 2 mm dose grid.
``sweep.speedup_2w``
    ``samples_per_s_2w / samples_per_s_1w`` in the same run (2 cores: at most 2).
``sweep.serial_equal``
    1 when the 2-worker numbers equal the serial ones exactly, else 0.
"""

from __future__ import annotations

import logging
import time

GROUP = "sweep"


def run(*, quick: bool = False) -> dict[str, float]:
    from distributed import Client, LocalCluster

    from guidance.treatment.sweep import SweepOptions, run_sweep
    from models.beams.library import ElectronBeam
    from models.patient.phantom import make_phantom, planned_patient_from_applicator

    case = make_phantom(spacing_mm=(3.0, 3.0, 4.0)) if quick else make_phantom()
    plan = planned_patient_from_applicator(case)
    beam = ElectronBeam("liac", 8.0, 70.0, 0.0)
    options = SweepOptions(tre_mm=2.0, tracking_mm=1.0, samples=8 if quick else 32,
                           chunk=2 if quick else 8)
    out: dict[str, float] = {}
    results = {}
    for workers in (1, 2):
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                          dashboard_address=None, silence_logs=logging.WARNING) as cluster, \
                Client(cluster) as client:
            run_sweep(case, beam, plan, SweepOptions(samples=2, chunk=1), client=client)
            start = time.perf_counter()
            results[workers] = run_sweep(case, beam, plan, options, client=client)
            out[f"sweep.samples_per_s_{workers}w"] = options.samples / (
                time.perf_counter() - start)
    out["sweep.speedup_2w"] = out["sweep.samples_per_s_2w"] / out["sweep.samples_per_s_1w"]
    serial = run_sweep(case, beam, plan, options)
    out["sweep.serial_equal"] = float(serial.summary() == results[2].summary())
    return out
