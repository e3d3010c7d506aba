"""Robustness sweep: the error model's statistics, physics that responds to the error, and
Dask giving exactly the serial numbers, also when a worker dies mid-sweep."""

from __future__ import annotations

import json
import os
import signal
import threading

import numpy as np
import pytest

from guidance.treatment.sweep import SweepOptions, run_sweep, sample_poses
from models.base.errors import InputError
from models.base.transforms import angle_between_vectors_deg
from models.beams.library import ElectronBeam
from models.patient.phantom import planned_patient_from_applicator
from tests.conftest import random_rigid

BEAM = ElectronBeam("liac", 8.0, 60.0, 0.0)


def test_sampled_errors_have_the_stated_rms(rng) -> None:
    plan = random_rigid(rng, 100.0)
    options = SweepOptions(tre_mm=1.5, tracking_mm=0.8, tilt_deg=2.0, bevel_roll_deg=4.0,
                           samples=6000, seed=3)
    poses = sample_poses(plan, options)
    app_from_sample = np.linalg.inv(plan)[None] @ poses
    shift = app_from_sample[:, :3, 3]
    assert np.sqrt(np.mean(np.sum(shift ** 2, axis=1))) == pytest.approx(np.hypot(1.5, 0.8),
                                                                         rel=0.03)
    # tilt = angle of the beam axis; roll = rotation about it
    z = app_from_sample[:, :3, 2]
    tilt = np.array([angle_between_vectors_deg(v, [0, 0, 1]) for v in z])
    assert np.sqrt(np.mean(tilt ** 2)) == pytest.approx(2.0, rel=0.05)
    x = app_from_sample[:, :3, 0]
    roll = np.degrees(np.arctan2(x[:, 1], x[:, 0]))
    assert np.std(roll) == pytest.approx(4.0, rel=0.06)
    np.testing.assert_array_equal(poses, sample_poses(plan, options))   # same seed


def test_no_error_gives_the_nominal_coverage(coarse_phantom) -> None:
    plan = planned_patient_from_applicator(coarse_phantom)
    result = run_sweep(coarse_phantom, BEAM, plan,
                       SweepOptions(tre_mm=0.0, tracking_mm=0.0, tilt_deg=0.0, samples=3))
    for sample in result.samples:
        assert sample.v90_percent == result.nominal.v90_percent
        assert sample.dmax_gy == result.nominal.dmax_gy
    assert result.p_covered == float(result.nominal.v90_percent["CTV"] >= 95.0)
    assert "BODY" not in result.structures and result.structures[0] == "CTV"


def test_larger_error_widens_the_coverage_band(coarse_phantom) -> None:
    """A 30 deg bevel on a flat plan, 20 % of the CTV out of the beam: a 4 mm TRE spreads
    V90 more than a 0.5 mm one."""
    plan = planned_patient_from_applicator(coarse_phantom)
    beam = ElectronBeam("liac", 8.0, 60.0, 30.0)
    spread = {}
    for tre in (0.5, 4.0):
        result = run_sweep(coarse_phantom, beam, plan,
                           SweepOptions(tre_mm=tre, tracking_mm=0.0, tilt_deg=0.0,
                                        samples=10, seed=1), structures=["PANCREAS"])
        p5, _, p95 = result.percentiles("v90_percent", "CTV")
        spread[tre] = p95 - p5
    # (less than in proportion: V90 is bounded, and large moves push it against 100 %)
    assert spread[4.0] > 1.5 * spread[0.5] and spread[4.0] > 2.0


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as local, \
            distributed.Client(local) as client:
        yield client


def _same(a, b) -> None:
    assert [s.index for s in a.samples] == [s.index for s in b.samples]
    assert a.summary() == b.summary()
    for x, y in zip(a.samples, b.samples, strict=True):
        for name in a.structures:
            np.testing.assert_array_equal(x.curves[name], y.curves[name])


def test_dask_gives_the_serial_numbers_even_when_a_worker_dies(coarse_phantom,
                                                               cluster) -> None:
    plan = planned_patient_from_applicator(coarse_phantom)
    options = SweepOptions(tre_mm=2.0, tracking_mm=1.0, samples=12, chunk=2, seed=7)
    organs = ["PANCREAS", "STOMACH"]
    serial = run_sweep(coarse_phantom, BEAM, plan, options, structures=organs)
    _same(serial, run_sweep(coarse_phantom, BEAM, plan, options, structures=organs,
                            client=cluster))
    pids = list(cluster.run(os.getpid).values())
    killed = threading.Event()

    def kill_one(done: int, total: int) -> None:
        if done == 1 and not killed.is_set():
            killed.set()
            os.kill(pids[0], signal.SIGKILL)

    survived = run_sweep(coarse_phantom, BEAM, plan, options, structures=organs,
                         client=cluster, progress=kill_one)
    assert killed.is_set()
    _same(serial, survived)


def test_cli_writes_json_and_plot_and_refuses_bad_input(tmp_path, capsys) -> None:
    from guidance.cli.main import main

    out = tmp_path / "sweep"
    args = ["sweep", "phantom", "--energy", "8", "--applicator", "70", "--tre-mm", "1",
            "--tracking-mm", "0.5", "--samples", "3", "--serial", "--out", str(out)]
    assert main([*args, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    record = json.loads((out / "sweep.json").read_text())
    assert record["summary"] == summary and len(record["samples"]) == 3
    assert 0.0 <= summary["p_target_v90_ge_95"] <= 1.0
    assert (out / "sweep_dvh.png").stat().st_size > 5000
    assert main([*args[:-2], "--samples", "0"]) == 2
    assert "samples must be between" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["sweep", "--cases", str(tmp_path / "empty"), "--energy", "8",
                 "--applicator", "70", "--tre-mm", "1", "--tracking-mm", "1"]) == 2
    assert "no case folder" in capsys.readouterr().err


def test_options_refuse_nonsense() -> None:
    with pytest.raises(InputError, match="tre_mm"):
        SweepOptions(tre_mm=float("nan"))
    with pytest.raises(InputError, match="grid_mm"):
        SweepOptions(grid_mm=0.0)
