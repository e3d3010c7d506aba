"""Soak: the live loop, the dose service and the OpenIGTLink server for minutes, under faults.

``python -m benchmarks.soak --minutes 30`` (``make soak``; the test suite runs about a
minute of it, ``benchmarks/bench_reliability.py`` reports its numbers as bench keys).

What runs, as in the OR (headless):

* a :class:`~guidance.loop.guidance_loop.GuidanceLoop` fed by the scripted simulation
  (:class:`~guidance.sim.scripted.ScriptedSource` frames, poses measured by
  :class:`~guidance.sim.scripted.ScriptedTrackerDevice`) at ~30 frames/s, the applicator
  moving to a new pose every few seconds;
* the monitor's :class:`~guidance.treatment.dose_service.DoseService` on its worker thread,
  offered every tracked pose (a cheap analytic dose stands in for the engine: the soak
  tests the service, not the physics);
* an :class:`~guidance.igtl.server.IgtlServer` that streams every tracked applicator pose
  to a well-behaved ``pyigtl`` client.

Faults injected in turn, one every ``fault_period_s``: camera disconnect and reconnect
(no frames for 1.5 s, then a new source), frozen frames (one frame repeated 30 times),
timestamp jumps (+1e6 s, +inf, NaN on one frame), a clock reset (-100 s for good),
marker dropout bursts (no tool seen for 1 s), a dose worker exception (and a NaN dose),
OpenIGTLink client flapping (200 connect/close cycles) and flooding (two clients sending
1080p RGB IMAGEs for 3 s).

Checked throughout: every tracked applicator pose the loop gives (once the filter has
settled on a pose: 1 s after a pose change or fault) is within 0.1 mm / 0.05 deg of the
truth; after each fault the loop tracks the true pose again within 2 s; the dose service
keeps publishing doses for the poses asked for; the ``pyigtl`` client keeps receiving the
right poses; the process memory (RSS) does not grow (compared after a warm-up) and stays
under a documented bound during the IMAGE flood.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import math
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

FAULTS = ("disconnect", "frozen", "jump_ahead", "jump_inf", "jump_nan", "clock_reset",
          "dropout", "dose_exception", "igtl_flap", "igtl_flood")
#: Pose tolerance of a tracked applicator once the filter has settled (mm, deg).
POSE_TOL_MM, POSE_TOL_DEG = 0.1, 0.05
#: A fault must be followed by a correct tracked pose within this (s).
RECOVER_S = 2.0
#: A dose worker fault must be followed by a published dose within this (s). The service
#: counts a failed computation as done for its pose and tries again when the applicator
#: moves (every 4 s here): three failures in a row (two exceptions, one NaN dose) take
#: three moves.
DOSE_RECOVER_S = 16.0
#: Frames and poses after a pose change or fault that are not judged (filter settling, s).
SETTLE_S = 1.0
#: The server's received-bytes bound in the soak (for :meth:`drain` and, separately, for
#: :meth:`latest`), MiB; the IMAGE-flood RSS bound is built from it.
IGTL_QUEUE_MIB = 32
FLOOD_IMAGE_SHAPE = (1, 1080, 1920, 3)


@dataclass
class SoakResult:
    """What a soak measured (see the module docstring for the checks)."""

    minutes: float
    frames: int = 0
    tracked_frames: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    recovered: dict[str, int] = field(default_factory=dict)
    wrong_poses: int = 0
    max_pose_error_mm: float = 0.0
    dose_updates: int = 0
    dose_failures: int = 0
    wrong_dose_poses: int = 0
    igtl_checks: int = 0
    igtl_wrong: int = 0
    igtl_missing: int = 0
    igtl_flap_cycles: int = 0
    igtl_flood_mb: float = 0.0
    rss_warm_mb: float = 0.0
    rss_end_mb: float = 0.0
    rss_max_mb: float = 0.0
    igtl_max_rss_mb: float = 0.0
    igtl_rss_bound_mb: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def mem_growth_percent(self) -> float:
        """RSS growth from the end of the warm-up to the end, % (the IMAGE-flood peak
        excluded: it is bounded separately)."""
        return 100.0 * (self.rss_end_mb - self.rss_warm_mb) / max(self.rss_warm_mb, 1.0)

    @property
    def unrecovered(self) -> int:
        return sum(self.faults.values()) - sum(self.recovered.values())

    @property
    def ok(self) -> bool:
        return (not self.errors and self.wrong_poses == 0 and self.unrecovered == 0
                and self.wrong_dose_poses == 0 and self.igtl_wrong == 0
                and self.igtl_max_rss_mb <= self.igtl_rss_bound_mb)


def rss_mb() -> float:
    """Resident memory of this process (MB, from /proc)."""
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _pose_error(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    from models.base.transforms import transform_difference

    return transform_difference(a, b)


def _analytic_case():
    from models.patient.case import Case, Structure
    from models.patient.volume import Volume

    ct = Volume.from_grid(np.zeros((20, 20, 20), np.float32), spacing_mm=(5.0, 5.0, 5.0),
                          origin_mm=(-50.0, -50.0, -50.0))
    ctv = np.zeros(ct.shape, bool)
    ctv[8:12, 8:12, 8:12] = True
    return Case(ct=ct, structures={"CTV": Structure("CTV", ctv, roi_type="CTV")})


class _FlakyDose:
    """A cheap dose (a Gaussian around the applicator) that fails when told to."""

    def __init__(self) -> None:
        self.fail_next = 0
        self.nan_next = 0
        self.calls = 0

    def __call__(self, case, patient_from_applicator, beam):
        from models.patient.volume import Volume

        self.calls += 1
        if self.fail_next:
            self.fail_next -= 1
            raise RuntimeError("injected dose engine failure")
        centre = patient_from_applicator[:3, 3]
        grid = case.ct
        k, j, i = np.indices(grid.shape)
        points = grid.patient_from_voxel @ np.stack([i.ravel(), j.ravel(), k.ravel(),
                                                     np.ones(i.size)])
        dist2 = np.sum((points[:3].T - centre) ** 2, axis=1).reshape(grid.shape)
        dose = beam.prescription_gy * np.exp(-dist2 / (2 * 30.0 ** 2))
        if self.nan_next:
            self.nan_next -= 1
            dose[0, 0, 0] = np.nan
        return Volume(dose.astype(np.float32), grid.patient_from_voxel)


def _flap(port: int, cycles: int, stop: threading.Event) -> int:
    done = 0
    for _ in range(cycles):
        if stop.is_set():
            break
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=2.0).close()
            done += 1
    return done


def _flood(port: int, seconds: float, image: bytes, sent: list[int]) -> None:
    deadline = time.monotonic() + seconds
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5.0) as sock:
            while time.monotonic() < deadline:
                sock.sendall(image)
                sent[0] += len(image)
    except OSError as exc:
        log.info("flood client ended: %s", exc)


class _Soak:
    """One soak run; see :func:`run_soak`."""

    def __init__(self, minutes: float, *, fps: float, fault_period_s: float,
                 seed: int, progress: Callable[[str], None] | None) -> None:
        import pyigtl

        from guidance.igtl.server import IgtlServer
        from guidance.loop.guidance_loop import GuidanceLoop
        from guidance.sim.scripted import ScriptedShot, ScriptedSource, ScriptedTrackerDevice
        from guidance.treatment.dose_service import BeamChoice, DoseService

        self.minutes = minutes
        self.fps = fps
        self.fault_period_s = fault_period_s
        self.progress = progress or (lambda text: None)
        self.rng = np.random.default_rng(seed)
        self.result = SoakResult(minutes=minutes, faults=dict.fromkeys(FAULTS, 0),
                                 recovered=dict.fromkeys(FAULTS, 0))
        self.camera_from_patient = np.eye(4)
        self.camera_from_patient[2, 3] = 450.0
        self._ScriptedShot = ScriptedShot
        self.shots = [ScriptedShot(self.camera_from_patient, self._new_pose())]
        self.background = np.zeros((48, 64, 3), np.uint8)
        self.device = ScriptedTrackerDevice(self.shots)
        self._make_source = lambda: ScriptedSource(self.shots, self.background, fps=0,
                                                   loop=True)
        self.source = self._make_source()
        self.loop = GuidanceLoop(self.source, (), np.array([[500.0, 0, 32], [0, 500.0, 24],
                                                             [0, 0, 1]]),
                                 device=self.device,
                                 patient_from_reference=self.device.patient_from_reference)
        self.dose = _FlakyDose()
        self.case = _analytic_case()
        self.beam = BeamChoice()
        self.service = DoseService(self.case, self.dose)
        self.server = IgtlServer(port=0, max_clients=16,
                                 received_queue_bytes=IGTL_QUEUE_MIB << 20).start()
        self.peer = pyigtl.OpenIGTLinkClient(host="127.0.0.1", port=self.server.port)
        self.clock_offset_s = 0.0
        self.settled_after_s = time.monotonic() + SETTLE_S
        self.sent_poses: dict[int, np.ndarray] = {}
        self.pending_recovery: list[tuple[str, float]] = []
        #: (dose sequence number, time) at the last dose worker fault, until a dose follows
        self.dose_pending: tuple[int, float] | None = None
        self.threads: list[threading.Thread] = []
        self.stop_threads = threading.Event()
        self.index = 0

    # ------------------------------------------------------------ the truth
    def _new_pose(self) -> np.ndarray:
        from models.base.transforms import transform_from_rotvec

        return transform_from_rotvec(self.rng.normal(size=3) * 0.3,
                                     self.rng.uniform(-40.0, 40.0, 3))

    @property
    def truth(self) -> np.ndarray:
        return self.shots[0].patient_from_applicator

    def _set_visible(self, visible: tuple[str, ...]) -> None:
        self.shots[0] = self._ScriptedShot(self.camera_from_patient, self.truth, visible)

    def _move(self) -> None:
        self.shots[0] = self._ScriptedShot(self.camera_from_patient, self._new_pose(),
                                           self.shots[0].visible)
        self.settled_after_s = time.monotonic() + SETTLE_S

    # ------------------------------------------------------------ one frame
    def _frame(self, *, stamp_s: float | None = None, frame=None):
        if frame is None:
            frame = self.source.read()
            stamp = time.monotonic() + self.clock_offset_s if stamp_s is None else stamp_s
            frame = dataclasses.replace(frame, timestamp_s=stamp)
        result = self.loop.process(frame)
        self.result.frames += 1
        self.index += 1
        if result is None:
            return frame
        pose = result.patient_from_applicator
        if pose is None or result.state("applicator").value != "tracking":
            return frame
        self.result.tracked_frames += 1
        error_mm, error_deg = _pose_error(pose, self.truth)
        now = time.monotonic()
        good = error_mm <= POSE_TOL_MM and error_deg <= POSE_TOL_DEG
        if now >= self.settled_after_s:
            self.result.max_pose_error_mm = max(self.result.max_pose_error_mm, error_mm)
            if not good:
                self.result.wrong_poses += 1
                self.result.errors.append(f"frame {self.index}: applicator {error_mm:.3f} mm "
                                          f"{error_deg:.3f} deg off")
        if good:
            for kind, since in list(self.pending_recovery):
                if now - since <= RECOVER_S:
                    self.result.recovered[kind] += 1
                self.pending_recovery.remove((kind, since))
        self.service.request(pose, self.beam)
        self.server.send_transform("ApplicatorToPatient", pose, timestamp_s=float(self.index))
        self.sent_poses[self.index] = pose   # what was sent (filtered, maybe settling)
        self.sent_poses.pop(self.index - 600, None)
        return frame

    def _pace(self, next_s: float) -> float:
        wait = next_s - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        return max(next_s + 1.0 / self.fps, time.monotonic())

    # ------------------------------------------------------------ the faults
    def _inject(self, kind: str) -> None:
        self.result.faults[kind] += 1
        self.progress(f"fault {kind}")
        if kind == "disconnect":
            self.source.close()
            time.sleep(1.5)
            self.source = self._make_source()   # the camera is plugged back in
            self.source.open()
        elif kind == "frozen":
            frame = self._frame()
            for _ in range(30):
                self._frame(frame=frame)
        elif kind in ("jump_ahead", "jump_inf", "jump_nan"):
            now = time.monotonic() + self.clock_offset_s
            self._frame(stamp_s={"jump_ahead": now + 1e6, "jump_inf": math.inf,
                                 "jump_nan": math.nan}[kind])
        elif kind == "clock_reset":
            self.clock_offset_s -= 100.0
        elif kind == "dropout":
            self._set_visible(())
            next_s = time.monotonic()
            end = next_s + 1.0
            while time.monotonic() < end:
                self._frame()
                next_s = self._pace(next_s)
            self._set_visible(("reference", "applicator"))
        elif kind == "dose_exception":
            self.dose.fail_next, self.dose.nan_next = 2, 1
            self.service.invalidate()
            self.dose_pending = (self.service.latest()[0], time.monotonic())
            self.settled_after_s = time.monotonic() + SETTLE_S
            return   # recovered when a dose is published again (_check_dose)
        elif kind == "igtl_flap":
            thread = threading.Thread(target=lambda: setattr(
                self.result, "igtl_flap_cycles", self.result.igtl_flap_cycles
                + _flap(self.server.port, 200, self.stop_threads)), daemon=True)
            thread.start()
            self.threads.append(thread)
        elif kind == "igtl_flood":
            self._flood()
        self.settled_after_s = time.monotonic() + SETTLE_S
        self.pending_recovery.append((kind, time.monotonic()))

    def _flood(self) -> None:
        import pyigtl

        image = pyigtl.ImageMessage(np.zeros(FLOOD_IMAGE_SHAPE, np.uint8),
                                    device_name="Flood").pack()
        sent = [0]
        before = rss_mb()
        # bound: what was resident, the two received stores, one message being read per
        # flooder and its decoded copy, plus 100 MB for the allocator's slack
        bound = before + 2 * IGTL_QUEUE_MIB + 2 * 2 * len(image) / 2**20 + 100.0
        self.result.igtl_rss_bound_mb = max(self.result.igtl_rss_bound_mb, bound)
        flooders = [threading.Thread(target=_flood, args=(self.server.port, 3.0, image, sent),
                                     daemon=True) for _ in range(2)]
        for thread in flooders:
            thread.start()
        next_s = time.monotonic()
        while any(t.is_alive() for t in flooders):
            self._frame()
            self.result.igtl_max_rss_mb = max(self.result.igtl_max_rss_mb, rss_mb())
            next_s = self._pace(next_s)
        self.result.igtl_flood_mb += sent[0] / 2**20

    # ------------------------------------------------------------ checks
    def _check_igtl(self) -> None:
        message = self.peer.wait_for_message("ApplicatorToPatient", timeout=0.0)
        self.result.igtl_checks += 1
        if message is None:
            self.result.igtl_missing += 1
            return
        truth = self.sent_poses.get(round(message.timestamp))
        if truth is None:
            return
        error_mm, _ = _pose_error(np.asarray(message.matrix, float), truth)
        if error_mm > 0.01:   # float32 on the wire: ~1e-4 mm at 300 mm
            self.result.igtl_wrong += 1
            self.result.errors.append(f"OpenIGTLink pose {error_mm:.3f} mm off")

    def _check_dose(self) -> None:
        seq, update = self.service.latest()
        if self.dose_pending is not None:
            since_seq, since_s = self.dose_pending
            if seq > since_seq and self.dose.fail_next == self.dose.nan_next == 0:
                self.result.recovered["dose_exception"] += 1
                self.dose_pending = None
            elif time.monotonic() - since_s > DOSE_RECOVER_S:
                self.result.errors.append(f"no dose published within {DOSE_RECOVER_S:g} s "
                                          "of the dose worker failures")
                self.dose_pending = None
        if update is None:
            return
        self.result.dose_updates = seq
        if not np.all(np.isfinite(update.dose.array)):
            self.result.wrong_dose_poses += 1
            self.result.errors.append("a NaN dose was published")
        # the analytic dose peaks at the applicator: the published dose is of its pose
        peak = np.unravel_index(int(np.argmax(update.dose.array)), update.dose.shape)
        peak_mm = (update.dose.patient_from_voxel @ [peak[2], peak[1], peak[0], 1.0])[:3]
        offset_mm = float(np.linalg.norm(peak_mm - update.patient_from_applicator[:3, 3]))
        if update.beam != self.beam or offset_mm > 0.5 * np.sqrt(3) * 5.0 + 1e-6:
            self.result.wrong_dose_poses += 1
            self.result.errors.append(f"dose peak {offset_mm:.1f} mm from its pose")

    # ------------------------------------------------------------ the run
    def run(self) -> SoakResult:
        self.source.open()
        start = time.monotonic()
        end = start + 60.0 * self.minutes
        # memory is compared from the end of the first round of faults: by then every
        # bounded buffer (the server's received stores, the allocator's arenas) is full
        warm_until = start + min(len(FAULTS) * self.fault_period_s + 5.0,
                                 0.5 * 60.0 * self.minutes)
        next_fault = start + self.fault_period_s
        next_move = start + 4.0
        next_check = start + 1.0
        next_s = start
        kinds = list(FAULTS)
        try:
            while time.monotonic() < end:
                self._frame()
                now = time.monotonic()
                self.result.rss_max_mb = max(self.result.rss_max_mb, rss_mb()) \
                    if self.index % 30 == 0 else self.result.rss_max_mb
                if not self.result.rss_warm_mb and now >= warm_until:
                    self.result.rss_warm_mb = rss_mb()
                if now >= next_move:
                    self._move()
                    next_move = now + 4.0
                if now >= next_check:
                    self._check_igtl()
                    self._check_dose()
                    next_check = now + 1.0
                if now >= next_fault and now < end - DOSE_RECOVER_S - 2.0:
                    self._inject(kinds[sum(self.result.faults.values()) % len(kinds)])
                    next_fault = time.monotonic() + self.fault_period_s
                    next_s = time.monotonic()
                self._expire_recoveries()
                next_s = self._pace(next_s)
            self._drain_recoveries()
        finally:
            self.close()
        self.result.rss_end_mb = rss_mb()
        self.result.dose_failures = self.service.failures
        return self.result

    def _expire_recoveries(self) -> None:
        now = time.monotonic()
        for kind, since in list(self.pending_recovery):
            if now - since > RECOVER_S:
                self.pending_recovery.remove((kind, since))
                self.result.errors.append(f"no correct pose within {RECOVER_S:g} s of {kind}")

    def _drain_recoveries(self) -> None:
        deadline = time.monotonic() + RECOVER_S + 0.5
        next_s = time.monotonic()
        while self.pending_recovery and time.monotonic() < deadline:
            self._frame()
            self._expire_recoveries()
            next_s = self._pace(next_s)

    def close(self) -> None:
        self.stop_threads.set()
        for thread in self.threads:
            thread.join(5.0)
        self.peer.stop()
        self.server.stop()
        self.service.close()
        self.source.close()


def run_soak(minutes: float, *, fps: float = 30.0, fault_period_s: float = 6.0,
             seed: int = 0, progress: Callable[[str], None] | None = None) -> SoakResult:
    """Run the soak for ``minutes`` (see the module docstring); returns what it measured.

    ``fault_period_s`` apart, the faults of :data:`FAULTS` are injected in turn, so a run
    of ``len(FAULTS) * fault_period_s`` s (60 s by default) meets each once.
    """
    return _Soak(minutes, fps=fps, fault_period_s=fault_period_s, seed=seed,
                 progress=progress).run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--json", type=Path, help="write the result to this file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fault-period-s", type=float, default=6.0,
                        help="seconds between two faults (default 6)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    result = run_soak(args.minutes, seed=args.seed, fault_period_s=args.fault_period_s,
                      progress=lambda text: print(f"[soak {time.strftime('%H:%M:%S')}] {text}",
                                                  flush=True))
    summary = {**dataclasses.asdict(result), "mem_growth_percent": result.mem_growth_percent,
               "unrecovered": result.unrecovered, "ok": result.ok}
    summary["errors"] = summary["errors"][:20]
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
