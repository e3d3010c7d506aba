"""``iort run CASE``: the OR monitor on a case, a camera (or the simulated one) and a log."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from guidance.cli.inputs import (
    add_site_key_argument,
    case_label,
    load_case_spec,
    read_transform_file,
)
from guidance.treatment.dose_service import DEFAULT_MACHINE
from models.base.errors import InputError

if TYPE_CHECKING:
    from calibration.camera import CameraCalibration
    from guidance.treatment.dose_service import BeamChoice
    from models.patient.case import Case

log = logging.getLogger(__name__)

SOURCES_HELP = ("sim (simulated procedure on the phantom: registration with the pointer, "
                "then the applicator), scripted (phantom, known poses, no tracking), "
                "webcam[:N], igtl[:DEVICE] (OpenIGTLink IMAGE frames sent to our server), "
                "a video file or an image folder, none (no camera: the clock of an external "
                "tracker, --tracker igtl)")
TRACKER_HELP = ("where tool poses come from: markers (ArUco markers in the video, default) or "
                "igtl (an external tracker, e.g. PLUS or 3D Slicer, sending OpenIGTLink "
                "TRANSFORMs tool-to-tracker to our server; the applicator, pointer tip and "
                "3D/dose/slice views work without a camera, the AR overlay needs the camera "
                "tracked too: a 'camera' tool plus --hand-eye)")
#: Nominal intrinsics of the blank placeholder image shown without a camera (no overlay).
_NO_CAMERA_K = np.array([[600.0, 0.0, 319.5], [0.0, 600.0, 239.5], [0.0, 0.0, 1.0]])


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``run`` subcommand."""
    parser = subparsers.add_parser(
        "run", help="open the OR monitor (AR, 3D, slices, dose) on a case",
        description="Open the OR monitor: AR view, 3D view, CT slices with isodoses, surgeon "
                    "and oncologist modes, OpenIGTLink server and a crash-safe session log.")
    parser.add_argument("case", metavar="CASE",
                        help="'phantom' (built in), a case folder (iort case import) or a "
                             "DICOM folder (CT series + RTSTRUCT)")
    parser.add_argument("--source", help=SOURCES_HELP + " (default: sim; none with "
                                                      "--tracker igtl)")
    parser.add_argument("--calibration", type=Path, metavar="FILE",
                        help="camera calibration (JSON/YAML from 'iort calibrate'); required "
                             "for webcam, video and folder sources")
    parser.add_argument("--registration", type=Path, metavar="FILE",
                        help="JSON with a 4x4 'patient_from_reference'; without it a real "
                             "camera or tracker registers on screen: touch the fiducials "
                             "named in the banner with the pointer (Space/S/Backspace/"
                             "Enter)")
    parser.add_argument("--plan", type=Path, metavar="FILE",
                        help="plan JSON: the planned 4x4 'patient_from_applicator' and the "
                             "beam (machine, energy_mev, applicator_diameter_mm, bevel_deg, "
                             "prescription_gy, isodose_percent; optional 'limits' as in "
                             "assets/plan_limits.json); required unless CASE is the phantom "
                             "or a case with a stored plan. The monitor starts on this beam")
    parser.add_argument("--tracker", choices=("markers", "igtl"), default="markers",
                        help=TRACKER_HELP)
    parser.add_argument("--tracker-devices", default="", metavar="TOOL=DEVICE,...",
                        help="OpenIGTLink TRANSFORM device per tool for --tracker igtl "
                             "(default reference=ReferenceToTracker,pointer=PointerToTracker,"
                             "applicator=ApplicatorToTracker,camera=CameraToTracker; TOOL= "
                             "drops a tool). The pointer's origin must be its tip and the "
                             "applicator's its applicator frame (e.g. PLUS "
                             "pointer=StylusTipToTracker)")
    parser.add_argument("--hand-eye", type=Path, metavar="FILE",
                        help="for --tracker igtl: 'gripper_from_camera' from 'iort calibrate "
                             "hand-eye' (camera marker to camera); without it the 'camera' "
                             "TRANSFORM is taken as the camera frame itself")
    parser.add_argument("--machine", default=None,
                        help=f"beam data (default: the plan's machine; {DEFAULT_MACHINE} when "
                             "the plan names none)")
    parser.add_argument("--igtl-port", type=int, default=18944, metavar="N",
                        help="OpenIGTLink server port on 127.0.0.1 (default 18944; 0 = off)")
    parser.add_argument("--igtl-host", default="127.0.0.1",
                        help="interface for OpenIGTLink (default 127.0.0.1; only change on "
                             "a trusted network)")
    parser.add_argument("--session-log", type=Path, metavar="FILE",
                        help="new session log (default: a new session-<time>.sqlite in "
                             "$XDG_DATA_HOME/iort/sessions, ~/.local/share/iort/sessions "
                             "without XDG_DATA_HOME); owner-only. It names the case by a "
                             "keyed pseudonym of the patient ID, not by CASE")
    parser.add_argument("--log-identifiers", action="store_true",
                        help="record the patient ID and the CASE argument in the session "
                             "log instead of the pseudonym")
    add_site_key_argument(parser)
    parser.add_argument("--frames", type=int, default=None, metavar="N",
                        help="end the simulated procedure after N frames of its clock "
                             "(default: it runs in real time until the window closes; R "
                             "restarts the applicator's approach)")
    parser.add_argument("--field", choices=("plain", "realistic"), default="plain",
                        help="--source sim: how the simulated camera renders the field: plain "
                             "(the phantom's skin, VTK, a few frames/s) or realistic (the open "
                             "abdomen with retractors, moving gloved hands and OR lighting, "
                             "30 frames/s; default plain)")
    parser.add_argument("--full-screen", action="store_true", help="start full screen")
    parser.add_argument("--record-video", action="store_true",
                        help="keep the camera video beside the session log "
                             "(<log>.camera.mp4, owner-only) for 'iort replay'; frames are "
                             "dropped from the file, never from the guidance, when the "
                             "encoder falls behind")
    parser.add_argument("--mc-check", action=argparse.BooleanOptionalAction, default=None,
                        help="after every accepted Confirm, run the Monte Carlo second "
                             "check (ompmc, extra [mc]) in a background process and show its "
                             "progress and verdict (default: on when ompmc is installed)")
    parser.add_argument("--mc-uncertainty", type=float, default=2.0, metavar="PERCENT",
                        help="target Monte Carlo uncertainty of that check (default 2 %%)")
    parser.add_argument("--quit-after", type=float, metavar="S",
                        help="close the window after S seconds (smoke tests)")
    parser.set_defaults(func=run)


def mc_check_monitor(args: argparse.Namespace, session_log):
    """The monitor's Monte Carlo check as the arguments ask (None: ``--no-mc-check``).

    Raises InputError for ``--mc-check`` without ompmc or an uncertainty outside 0.5-10 %.
    """
    from guidance.monitor.mc_monitor import McCheckMonitor
    from models.dose.montecarlo.engine import ompmc_available

    if args.mc_check is False:
        return None
    if not (np.isfinite(args.mc_uncertainty) and 0.5 <= args.mc_uncertainty <= 10.0):
        raise InputError(f"--mc-uncertainty {args.mc_uncertainty!r}: must be 0.5-10 %")
    missing = "" if ompmc_available() else \
        "ompmc is not installed (pip install 'iort-guidance[mc]')"
    if missing and args.mc_check:
        raise InputError(f"--mc-check: {missing}")
    return McCheckMonitor(session_log=session_log, unavailable=missing,
                          uncertainty_percent=args.mc_uncertainty)


@dataclass(frozen=True)
class _Inputs:
    """Everything ``iort run`` reads from its arguments, read before anything is created."""

    case: Case
    plan: np.ndarray
    calibration: CameraCalibration | None = None  # for a real camera only
    patient_from_reference: np.ndarray | None = None
    gripper_from_camera: np.ndarray | None = None
    planned: PlannedBeam | None = None


@dataclass(frozen=True)
class PlannedBeam:
    """The plan's beam and limits: where the monitor starts and what it compares with."""

    machine: str
    beam: BeamChoice
    limits: dict | None = None   # the plan's or case's 'limits' (plan_limits.json form)
    name: str = ""

def _source_label(args: argparse.Namespace) -> str:
    """The frame source as the session log records it: a video file or image folder only by
    its kind (its name may be the patient's), unless --log-identifiers."""
    source = str(args.source)
    kind = source.partition(":")[0]
    if getattr(args, "log_identifiers", False) or \
            kind in ("none", "sim", "scripted", "igtl", "webcam"):
        return source
    return "folder" if Path(source).is_dir() else "file"


def _read_inputs(args: argparse.Namespace) -> _Inputs:
    """Read the case and every file named by the options (raises InputError on a bad one)."""
    case = load_case_spec(args.case)
    plan = _plan(args, case)
    planned = _planned_beam(args, case, plan)
    _check_source(args)
    return replace(_read_option_files(args, case, plan), planned=planned)


def _read_option_files(args: argparse.Namespace, case, plan: np.ndarray) -> _Inputs:
    """Read the calibration, registration and hand-eye files the options call for."""
    calibration = None
    if args.source not in ("none", "scripted", "sim"):
        from calibration.io import load_calibration

        calibration = load_calibration(args.calibration)
    hand_eye = None
    if (args.tracker == "igtl" and args.source != "none" and args.hand_eye is not None
            and "camera" in _tracker_devices(args)):
        hand_eye = read_transform_file(args.hand_eye, "gripper_from_camera",
                                       option="--hand-eye")
    return _Inputs(case=case, plan=plan, calibration=calibration,
                   patient_from_reference=_registration(args), gripper_from_camera=hand_eye)


def _tracker_devices(args: argparse.Namespace) -> dict[str, str]:
    from guidance.tracking.external import parse_device_names

    return parse_device_names(args.tracker_devices)


def _plan(args: argparse.Namespace, case) -> np.ndarray:
    if args.plan is not None:
        return read_transform_file(args.plan, "patient_from_applicator", option="--plan")
    if args.case == "phantom":
        from models.patient.phantom import planned_patient_from_applicator

        return planned_patient_from_applicator(case)
    raise InputError("--plan FILE is required for a case other than the phantom")


def _planned_beam(args: argparse.Namespace, case, pose: np.ndarray) -> PlannedBeam:
    """The plan's machine and beam: ``--machine`` > the ``--plan`` file > the case's stored
    plan > the phantom's plan (the same merge as ``iort export``)."""
    from guidance.treatment.dose_service import BeamChoice
    from models.base.files import read_json_file
    from models.beams.library import ElectronBeam, default_library
    from models.dicom.rt_export import resolve_plan

    plan_file: dict = {}
    if args.plan is not None:
        try:
            data = read_json_file(args.plan, what="--plan")
        except InputError:
            data = None   # a 4x4 text file: the pose only (read by _plan)
        if isinstance(data, dict):
            from models.dicom.rt_export import read_plan_file

            data = read_plan_file(args.plan)
        plan_file = dict(data) if isinstance(data, dict) else {}
        plan_file["patient_from_applicator"] = pose
    try:
        spec = resolve_plan(case, plan_file=plan_file, overrides={"machine": args.machine})
    except InputError as exc:
        raise InputError(f"--plan {args.plan}: the plan must carry its beam ({exc}); add "
                         "machine, energy_mev, applicator_diameter_mm, bevel_deg, "
                         "prescription_gy, isodose_percent") from exc
    default_library().validate(ElectronBeam(spec.machine, spec.energy_mev,
                                            spec.applicator_diameter_mm, spec.bevel_deg))
    limits = plan_file.get("limits") or (case.plan or {}).get("limits")
    name = args.plan.name if args.plan is not None else (
        "case plan" if case.plan else "phantom plan")
    beam = BeamChoice(energy_mev=spec.energy_mev,
                      applicator_diameter_mm=spec.applicator_diameter_mm,
                      bevel_deg=spec.bevel_deg, prescription_gy=spec.prescription_gy,
                      isodose_percent=spec.isodose_percent)
    return PlannedBeam(spec.machine, beam, limits, name)


def _tracker_poses(args: argparse.Namespace, inputs: _Inputs, igtl, *, with_camera: bool):
    """The external tracker's tool poses for ``--tracker igtl`` (None for markers)."""
    if args.tracker != "igtl":
        return None
    from guidance.tracking.external import IgtlToolPoses

    devices = _tracker_devices(args)
    geometry = {}
    if not with_camera:
        devices.pop("camera", None)  # nothing to overlay on: no camera pose wanted
    elif inputs.gripper_from_camera is not None:
        geometry["camera"] = inputs.gripper_from_camera
    return IgtlToolPoses(igtl, devices, marker_from_frame=geometry)


def _registration(args: argparse.Namespace) -> np.ndarray | None:
    if args.registration is None:
        return None
    return read_transform_file(args.registration, "patient_from_reference",
                               option="--registration")


def _guided(loop, inputs: _Inputs, session_log):
    """The on-screen pointer registration for a real source without ``--registration``
    (None when a registration file is given or the case has fewer than 3 fiducials)."""
    if inputs.patient_from_reference is not None:
        return None
    case, plan = inputs.case, inputs.plan
    if len(case.fiducials_lps) < 3:
        log.warning("case has %d fiducials: no pointer registration possible; use "
                    "--registration FILE", len(case.fiducials_lps))
        return None
    from guidance.registration.guided import GuidedRegistration

    target = case.centroid_lps("CTV") if "CTV" in case.structures else plan[:3, 3]
    return GuidedRegistration(loop, case.fiducials_lps, target_lps=target,
                              session_log=session_log)


def _check_tracker(args: argparse.Namespace) -> None:
    """Resolve the default ``--source`` and reject inconsistent ``--tracker`` options early."""
    if args.source is None:
        args.source = "none" if args.tracker == "igtl" else "sim"
    if args.tracker != "igtl":
        if args.source == "none":
            raise InputError("--source none needs --tracker igtl (the tracker's poses drive "
                             "the loop)")
        return
    from guidance.tracking.external import parse_device_names

    if not args.igtl_port:
        raise InputError("--tracker igtl needs the OpenIGTLink server (--igtl-port N > 0)")
    if args.source in ("sim", "scripted"):
        raise InputError(f"--tracker igtl cannot drive --source {args.source}; use --source "
                         "none or a real camera")
    devices = parse_device_names(args.tracker_devices)
    if args.source == "none" and set(devices) <= {"camera"}:
        raise InputError("--tracker-devices: no tool left to track without a camera")


def _check_source(args: argparse.Namespace) -> None:
    """Reject a ``--source`` that cannot work with the case and options, before anything
    is opened or created."""
    source = args.source
    if args.frames is not None and (args.frames < 1 or source != "sim"):
        raise InputError(f"--frames {args.frames}: a number >= 1, and only for --source sim")
    if source == "scripted" and args.case != "phantom":
        raise InputError("--source scripted only works with the phantom")
    if source == "sim" and args.case != "phantom":
        raise InputError("--source sim only works with the phantom (it renders it)")
    if source in ("scripted", "sim") and args.registration is not None:
        raise InputError(f"--registration {args.registration}: not used with --source "
                         f"{source} (the simulated procedure registers itself); drop it")
    if args.tracker_devices and args.tracker != "igtl":
        raise InputError("--tracker-devices is only used with --tracker igtl; drop it or add "
                         "--tracker igtl")
    if source in ("none", "scripted", "sim"):
        return
    kind, _, device = source.partition(":")
    if kind == "igtl":
        if not args.igtl_port:
            raise InputError("--source igtl needs the OpenIGTLink server (--igtl-port N > 0)")
    elif kind == "webcam":
        if device and not device.isdigit():
            raise InputError(f"--source {source!r}: the webcam number must be an integer "
                             "(webcam:0)")
        from guidance.frames.opencv import check_camera_index

        check_camera_index(int(device or 0), what=f"--source {source}:")
    elif not Path(source).is_dir() and not Path(source).is_file():
        if Path(source).suffix or os.sep in source:
            raise InputError(f"--source {source}: file or folder not found; check the path")
        raise InputError(f"--source {source!r}: unknown source; use sim, scripted, none, "
                         "webcam[:N], igtl[:DEVICE], a video file or an image folder")
    if args.calibration is None:
        raise InputError(f"--source {source}: --calibration FILE is required for a real camera")


def _camera_frames(args: argparse.Namespace, inputs: _Inputs, igtl):
    """Open the frame source of a real camera ``--source`` (None for sim, scripted, none)."""
    source = args.source
    if source in ("none", "scripted", "sim"):
        return None
    from guidance.frames.opencv import ImageFolderSource, VideoFileSource, WebcamSource

    kind, _, device = source.partition(":")
    if kind == "webcam":
        return WebcamSource(int(device or 0), image_size=tuple(inputs.calibration.image_size))
    if kind == "igtl":
        from guidance.frames.igtl_inbox import IgtlImageSource

        return IgtlImageSource(igtl, device or "Video")
    if Path(source).is_dir():
        return ImageFolderSource(source)
    return VideoFileSource(source)


def _feed(args: argparse.Namespace, inputs: _Inputs, frames, session_log, igtl):
    """Build the frame feed for ``--source`` (checked by :func:`_check_source` and
    :func:`_check_tracker`; ``frames`` from :func:`_camera_frames`)."""
    source = args.source
    if source == "none":
        from guidance.loop.guidance_loop import GuidanceLoop
        from guidance.monitor.feed import LoopFeed
        from guidance.tracking.external import TrackerClockSource

        poses = _tracker_poses(args, inputs, igtl, with_camera=False)
        clock = TrackerClockSource(poses, image_size=(640, 480))
        loop = GuidanceLoop(clock, {}, _NO_CAMERA_K, tool_poses=poses,
                            patient_from_reference=inputs.patient_from_reference)
        return LoopFeed(loop, _NO_CAMERA_K, on_result=_guided(loop, inputs, session_log))
    if source == "scripted":
        from guidance.monitor.feed import ScriptedFeed
        from guidance.monitor.rehearsal import phantom_view

        view = phantom_view(spacing_mm=(1.5, 1.5, 2.5), image_size=(1280, 720))
        return ScriptedFeed(view.shots(scripted_path_mm()), view.camera_matrix,
                            view.background(), fps=30.0, loop=True, realtime=True)
    if source == "sim":
        from guidance.monitor.rehearsal import simulated_feed

        return simulated_feed(inputs.case, frames=args.frames, session_log=session_log,
                              field=args.field, realtime=True)[0]
    from calibration.undistort import undistorter_for
    from guidance.loop.guidance_loop import GuidanceLoop
    from guidance.monitor.feed import LoopFeed
    from guidance.tracking.tools import load_builtin_tools

    calibration = inputs.calibration
    loop = GuidanceLoop(frames, load_builtin_tools(), calibration.camera_matrix,
                        calibration.dist_coeffs,
                        patient_from_reference=inputs.patient_from_reference,
                        tool_poses=_tracker_poses(args, inputs, igtl, with_camera=True))
    loop.calibrated_size_px = tuple(calibration.image_size)  # other sizes are not tracked
    undistorter = undistorter_for(calibration)
    return LoopFeed(loop, undistorter.camera_matrix, undistort=undistorter.undistort,
                    on_result=_guided(loop, inputs, session_log))


def scripted_path_mm(radius_mm: float = 8.0, rest_shots: int = 30,
                     move_shots: int = 22) -> list[tuple[float, float, float]]:
    """Applicator offsets (mm, patient) of ``--source scripted``: around the plan on a
    circle, resting ``rest_shots`` (1 s at 30 frames/s) at every quarter and moving
    ``move_shots`` between them, as a hand places, holds and moves again. The monitor shows
    the preview while it moves and the full model's dose (recorded) while it rests.

    Examples
    --------
    >>> path = scripted_path_mm()
    >>> len(path), path[0] == path[29], path[30] == path[0]
    (208, True, False)
    """
    path: list[tuple[float, float, float]] = []
    for quarter in range(4):
        start = 0.5 * np.pi * quarter
        path += [(radius_mm * np.cos(start), radius_mm * np.sin(start), 0.0)] * rest_shots
        path += [(radius_mm * np.cos(t), radius_mm * np.sin(t), 0.0)
                 for t in start + 0.5 * np.pi * np.arange(1, move_shots + 1)
                 / (move_shots + 1)]
    return path


def _guided_of(feed):
    """The feed's guided registration, if it has one (the monitor shows and drives it)."""
    from guidance.registration.guided import GuidedRegistration

    hook = getattr(feed, "on_result", None)
    return hook if isinstance(hook, GuidedRegistration) else None


def _attach_anatomy(logic, case_arg: str) -> None:
    """Anatomy edits of a case folder: shown from the start, and every new one saved there
    (docs/anatomy.md); other cases keep their edits in the session log only."""
    from guidance.monitor.anatomy import attach_anatomy
    from models.patient.case_store import MANIFEST, load_edits

    folder = Path(case_arg)
    if case_arg != "phantom" and (folder / MANIFEST).is_file():
        attach_anatomy(logic, edits=load_edits(folder), case_dir=folder)


def _open_session_log(args: argparse.Namespace, inputs: _Inputs, case_id: str, log_path):
    """Create the session log with what identifies the session (source, CT digest, plan)."""
    from guidance.record.session_log import SessionLog

    planned = inputs.planned
    return SessionLog.create(log_path, case_id=case_id,
                             metadata={"source": _source_label(args),
                                       "ct_sha256": inputs.case.ct.digest_sha256(),
                                       "plan_patient_from_applicator": inputs.plan,
                                       "planned_beam": asdict(planned.beam),
                                       "machine": planned.machine,
                                       "tracker": args.tracker})


def _stall_limit_s(args: argparse.Namespace) -> float:
    """How long (s) the newest camera frame may stay on screen before capture is stalled.

    The plain simulated camera renders ~3 frames/s on a 2-core CPU, the realistic field ~30
    but with hiccups when the machine is busy: their newest frame stays on screen longer
    (a real camera: 200 ms); tool states themselves are the loop's.
    """
    if args.source == "sim":
        return 1.0 if args.field == "plain" else 0.5
    return 0.2


def run(args: argparse.Namespace) -> int:
    """Open the monitor; returns when the window is closed.

    Every argument is checked and every input file read before the session log (and its
    folder) is created, so a mistake leaves nothing behind.
    """
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        raise InputError("iort run needs a display (X server); without one use "
                         "'iort demo --headless'")
    if not 0 <= args.igtl_port <= 65535:
        raise InputError(f"--igtl-port {args.igtl_port}: must be 0..65535")
    _check_tracker(args)
    mc_check = mc_check_monitor(args, None)   # a wrong --mc-check: refused before any work
    from guidance.igtl.server import IgtlServer
    from guidance.monitor.logic import MonitorLogic
    from guidance.record.session_log import session_log_path
    from guidance.treatment.dose_check import load_plan_limits
    from guidance.treatment.dose_service import beam_options, electron_dose_function

    inputs = _read_inputs(args)
    case_id = case_label(inputs.case, args)   # a bad site key is refused before any work
    planned = inputs.planned
    options = beam_options(planned.machine)
    limits = load_plan_limits().with_overrides(planned.limits, what=f"{planned.name} limits")
    beam = planned.beam   # start on the plan's beam
    log_path = session_log_path(args.session_log)
    igtl = None
    session_log = None
    logic = None
    code: int | None = None
    try:
        if args.igtl_port:
            igtl = IgtlServer(args.igtl_port, host=args.igtl_host).start()
            print(f"OpenIGTLink server: {args.igtl_host}:{igtl.port}")
        frames = _camera_frames(args, inputs, igtl)
        session_log = _open_session_log(args, inputs, case_id, log_path)
        print(f"session log: {log_path}")
        if mc_check is not None:
            mc_check.session_log = session_log
        feed = _feed(args, inputs, frames, session_log, igtl)
        if getattr(feed, "loop", None) is not None:   # what 'iort replay' feeds back
            from guidance.record.tracking_record import record_tracking

            record_tracking(feed.loop, session_log, video=args.record_video)
        dose_fn = electron_dose_function(planned.machine)
        dose_fn(inputs.case, inputs.plan, beam)  # warm the kernel (JIT) before the window
        stall_s = _stall_limit_s(args)
        logic = MonitorLogic(inputs.case, inputs.plan, feed, dose_fn=dose_fn, beam=beam,
                             planned_beam=beam, machine=planned.machine, limits=limits,
                             plan_name=planned.name, beam_options=options,
                             session_log=session_log, igtl=igtl, stall_limit_s=stall_s,
                             registration=_guided_of(feed),
                             notices=inputs.calibration.warnings()
                             if inputs.calibration is not None else (),
                             mc_check=mc_check)
        _attach_anatomy(logic, args.case)
        from guidance.monitor.qt.window import INTERRUPTED, run_window

        logic.start()
        code = run_window(logic, full_screen=args.full_screen, quit_after_s=args.quit_after)
        if code == INTERRUPTED:
            print("iort: interrupted", file=sys.stderr)
    finally:
        if logic is not None:
            logic.close()   # (again) after the window: workers stopped whatever happened
        if igtl is not None:
            igtl.stop()
        if session_log is not None:
            session_log.close(exit_code=code)
    return code
