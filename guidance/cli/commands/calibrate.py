"""``iort calibrate``: camera intrinsics (ChArUco), pointer pivot, and hand-eye calibration.

All computation is in :mod:`calibration`; this module reads the inputs (image folders,
videos, a live camera, pose files), calls it, prints a report and writes the result.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from calibration.boards import DEFAULT_BOARD, BoardSpec, board_from_values, load_board
from calibration.errors import CalibrationError
from calibration.handeye import METHODS, calibrate_hand_eye
from calibration.intrinsics import IntrinsicsOptions, calibrate_from_images
from calibration.io import JSON_SUFFIXES, OPENCV_SUFFIXES, save_calibration
from calibration.pivot import pivot_calibration
from calibration.pose_files import load_poses
from models.base.files import output_file

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``calibrate`` subcommand with ``camera``, ``pivot`` and ``hand-eye``."""
    parser = subparsers.add_parser(
        "calibrate", help="calibrate the camera (ChArUco), a pointer tip (pivot) or hand-eye",
        description="Calibration tools. See docs/calibration.md.")
    sub = parser.add_subparsers(dest="calibrate_command", metavar="WHAT")
    sub.required = True

    cam = sub.add_parser("camera", help="camera intrinsics from ChArUco board views",
                         description="Detect a ChArUco board in images, a video or a live "
                                     "camera, drop blurred/duplicate/outlier views, calibrate "
                                     "and write CALIB.json (or .yaml/.xml for OpenCV).")
    source = cam.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", type=Path, metavar="DIR", help="folder of board images")
    source.add_argument("--video", type=Path, metavar="FILE", help="video of the board")
    source.add_argument("--camera", type=int, metavar="N", help="live camera index")
    cam.add_argument("--board", metavar="NAME|FILE.json",
                     help=f"board definition (default {DEFAULT_BOARD} unless --squares given)")
    cam.add_argument("--squares", metavar="CxR", help="board squares, columns x rows (7x5)")
    cam.add_argument("--square-mm", type=float, metavar="S", help="square side, mm")
    cam.add_argument("--marker-mm", type=float, metavar="M", help="marker side, mm")
    cam.add_argument("--dictionary", metavar="NAME",
                     help="ArUco dictionary of a --squares board (default DICT_5X5_100; a "
                          "named --board carries its own)")
    cam.add_argument("--legacy-pattern", action="store_true",
                     help="board printed by OpenCV < 4.6 (even row count)")
    cam.add_argument("--out", type=Path, required=True, metavar="CALIB.json",
                     help="output calibration (.json, .yaml, .yml or .xml)")
    cam.add_argument("--max-frames", type=int, default=60, metavar="N",
                     help="video/camera: frames to use at most (default 60)")
    cam.add_argument("--interval-s", type=float, default=0.7, metavar="S",
                     help="camera: seconds between grabbed frames (default 0.7)")
    cam.add_argument("--min-views", type=int, default=IntrinsicsOptions.min_views, metavar="N",
                     help=f"usable views required (default {IntrinsicsOptions.min_views})")
    cam.set_defaults(func=run_camera)

    piv = sub.add_parser("pivot", help="pointer tip from poses pivoting about a divot",
                         description="Pivot calibration (least squares + seeded RANSAC) of a "
                                     "tracked tool's tip; refuses poses with too little "
                                     "rotation.")
    piv.add_argument("--poses", type=Path, required=True, metavar="FILE",
                     help="tracker_from_tool poses: .json, .csv/.txt (16 or 12 numbers a row) "
                          "or .npy")
    piv.add_argument("--field", default="tracker_from_tool",
                     help="JSON field holding the poses (default tracker_from_tool)")
    piv.add_argument("--inlier-mm", type=float, default=1.5, help="RANSAC threshold, mm")
    piv.add_argument("--min-spread-deg", type=float, default=10.0,
                     help="minimum rotation spread, deg (default 10)")
    piv.add_argument("--seed", type=int, default=0, help="RANSAC seed (default 0)")
    piv.add_argument("--out", type=Path, metavar="FILE.json", help="write the result as JSON")
    piv.set_defaults(func=run_pivot)

    he = sub.add_parser("hand-eye", help="solve AX = XB (OpenCV calibrateHandEye conventions)",
                        description="Hand-eye calibration from paired poses in one JSON file "
                                    "with fields base_from_gripper and camera_from_target "
                                    "(OpenCV gripper2base / target2cam). Result: "
                                    "gripper_from_camera (OpenCV cam2gripper).")
    he.add_argument("--poses", type=Path, required=True, metavar="FILE.json")
    he.add_argument("--method", choices=(*METHODS, "all"), default="park",
                    help="solver (default park; 'all' compares them)")
    he.add_argument("--eye-to-hand", action="store_true",
                    help="camera fixed, target on the gripper: inverts the gripper poses and "
                         "reports base_from_camera")
    he.add_argument("--out", type=Path, metavar="FILE.json", help="write the result as JSON")
    he.set_defaults(func=run_hand_eye)


# --- camera -----------------------------------------------------------------------------

def board_from_args(args: argparse.Namespace) -> BoardSpec:
    """The board named by ``--board`` or described by ``--squares/--square-mm/--marker-mm``."""
    given = [args.squares, args.square_mm, args.marker_mm]
    if args.dictionary is not None and all(v is None for v in given):
        raise CalibrationError("--dictionary applies only to a board given with --squares/"
                               "--square-mm/--marker-mm; a named --board carries its own "
                               "dictionary")
    if any(v is not None for v in given):
        if args.board:
            raise CalibrationError("give either --board or --squares/--square-mm/--marker-mm, "
                                   "not both")
        if any(v is None for v in given):
            raise CalibrationError("--squares, --square-mm and --marker-mm must be given "
                                   "together")
        return board_from_values(args.squares, args.square_mm, args.marker_mm,
                                 args.dictionary or "DICT_5X5_100",
                                 legacy_pattern=args.legacy_pattern)
    return load_board(args.board or DEFAULT_BOARD)


def images_from_dir(directory: Path) -> Iterator[tuple[str, np.ndarray]]:
    """``(file name, grey image)`` for every image file in ``directory`` (sorted)."""
    if not directory.is_dir():
        raise CalibrationError(f"--images {directory}: not a directory")
    files = sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise CalibrationError(f"--images {directory}: no {', '.join(IMAGE_SUFFIXES)} files")
    for path in files:
        image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if image is None:
            raise CalibrationError(f"{path}: cannot be read as an image")
        yield path.name, image


def frames_from_video(path: Path, max_frames: int) -> Iterator[tuple[str, np.ndarray]]:
    """Up to ``max_frames`` frames spread evenly over the video."""
    if not path.is_file():
        raise CalibrationError(f"--video {path}: file not found")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise CalibrationError(f"--video {path}: cannot be opened as a video")
    try:
        total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        step = max(1, total // max_frames) if total > 0 else 1
        index = 0
        taken = 0
        while taken < max_frames:
            ok, frame = capture.read()
            if not ok:
                break
            if index % step == 0:
                taken += 1
                yield f"frame {index}", frame
            index += 1
    finally:
        capture.release()


def frames_from_camera(index: int, max_frames: int,
                       interval_s: float) -> Iterator[tuple[str, np.ndarray]]:
    """Grab ``max_frames`` frames ``interval_s`` apart while the user moves the board."""
    from guidance.frames.opencv import check_camera_index

    capture = cv2.VideoCapture(check_camera_index(index, what="--camera"))
    if not capture.isOpened():
        raise CalibrationError(f"--camera {index}: camera cannot be opened (is it connected "
                               f"and not used by another program?)")
    try:
        print(f"grabbing {max_frames} frames, one every {interval_s:g} s: move the board "
              f"through the whole image, tilted in different directions")
        for i in range(max_frames):
            ok, frame = capture.read()
            if not ok:
                raise CalibrationError(f"--camera {index}: frame {i} could not be read")
            yield f"frame {i}", frame
            time.sleep(interval_s)
    finally:
        capture.release()


def run_camera(args: argparse.Namespace) -> int:
    """Calibrate intrinsics and write the calibration file."""
    output_file(args.out, suffixes=JSON_SUFFIXES + OPENCV_SUFFIXES)   # before the work
    board = board_from_args(args)
    if args.images is not None:
        frames = images_from_dir(args.images)
    elif args.video is not None:
        frames = frames_from_video(args.video, args.max_frames)
    else:
        frames = frames_from_camera(args.camera, args.max_frames, args.interval_s)
    options = IntrinsicsOptions(min_views=args.min_views)
    print(f"board: {board.describe()}")
    calibration = calibrate_from_images(frames, board, options=options)
    print(f"{'view':<24} {'status':<16} {'corners':>7} {'error px':>9}")
    for view in calibration.views:
        error = f"{view.error_px:9.3f}" if np.isfinite(view.error_px) else " " * 9
        print(f"{view.name:<24} {view.status:<16} {view.n_corners:>7} {error}")
    print(calibration.summary())
    print("coverage (corners per image cell):")
    for row in calibration.coverage_map:
        print("  " + " ".join(f"{v:3d}" for v in row))
    save_calibration(calibration, args.out)
    print(f"wrote {args.out}")
    return 0


# --- pivot ------------------------------------------------------------------------------

def run_pivot(args: argparse.Namespace) -> int:
    """Pivot-calibrate from a pose file."""
    if args.out:
        output_file(args.out, suffixes=(".json",))
    poses = load_poses(args.poses, field=args.field)
    result = pivot_calibration(poses, inlier_mm=args.inlier_mm,
                               min_rotation_spread_deg=args.min_spread_deg,
                               rng=np.random.default_rng(args.seed))
    tip = ", ".join(f"{v:.2f}" for v in result.tip_mm)
    pivot = ", ".join(f"{v:.2f}" for v in result.pivot_mm)
    std = ", ".join(f"{v:.2f}" for v in result.tip_std_mm)
    print(f"tip (tool frame)        [{tip}] mm  (std {std} mm)")
    print(f"pivot (tracker frame)   [{pivot}] mm")
    print(f"RMS residual            {result.rms_mm:.3f} mm over {int(result.inliers.sum())} of "
          f"{len(result.inliers)} poses")
    print(f"rotation spread         {result.rotation_spread_deg:.1f} deg")
    if args.out:
        args.out.write_text(json.dumps({
            "tip_mm": result.tip_mm.tolist(), "pivot_mm": result.pivot_mm.tolist(),
            "rms_mm": result.rms_mm, "tip_std_mm": result.tip_std_mm.tolist(),
            "inliers": result.inliers.tolist(),
            "rotation_spread_deg": result.rotation_spread_deg,
            "poses": str(args.poses)}, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


# --- hand-eye ---------------------------------------------------------------------------

def run_hand_eye(args: argparse.Namespace) -> int:
    """Hand-eye calibrate from paired poses."""
    if args.out:
        output_file(args.out, suffixes=(".json",))
    grip = load_poses(args.poses, field="base_from_gripper")
    cam = load_poses(args.poses, field="camera_from_target")
    if args.eye_to_hand:
        grip = np.linalg.inv(grip)
    name = "base_from_camera" if args.eye_to_hand else "gripper_from_camera"
    methods = METHODS if args.method == "all" else (args.method,)
    results = {m: calibrate_hand_eye(grip, cam, method=m) for m in methods}
    for method, result in results.items():
        print(f"{method:<11} residual {result.rotation_rms_deg:.3f} deg, "
              f"{result.translation_rms_mm:.3f} mm over {result.n_pairs} motion pairs")
    chosen = results[methods[0]]
    print(f"{name} ({chosen.method}):")
    for row in chosen.gripper_from_camera:
        print("  " + " ".join(f"{v:10.4f}" for v in row))
    if args.out:
        args.out.write_text(json.dumps({
            name: chosen.gripper_from_camera.tolist(), "method": chosen.method,
            "rotation_rms_deg": chosen.rotation_rms_deg,
            "translation_rms_mm": chosen.translation_rms_mm, "n_pairs": chosen.n_pairs,
            "conventions": "OpenCV 4 calibrateHandEye: base_from_gripper = gripper2base, "
                           "camera_from_target = target2cam, result = cam2gripper"},
            indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0
