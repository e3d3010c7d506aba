"""``iort case``: write the built-in phantom as DICOM, import a DICOM folder as a case."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from models.base.errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``case phantom`` and ``case import``."""
    parser = subparsers.add_parser(
        "case", help="patient data: built-in phantom, DICOM import",
        description="Write the built-in phantom as real DICOM, or import a DICOM folder "
                    "(CT/MR series + RTSTRUCT) into a case folder that loads fast.")
    sub = parser.add_subparsers(dest="case_command", metavar="ACTION")
    sub.required = True

    phantom = sub.add_parser(
        "phantom", help="write the built-in abdominal phantom (CT series + RTSTRUCT)",
        description="Write the deterministic abdominal phantom as a CT series (one file per "
                    "slice) and an RTSTRUCT with every structure and the skin fiducials.")
    phantom.add_argument("--out", type=Path, required=True, metavar="DIR",
                         help="output folder (must be empty unless --force)")
    phantom.add_argument("--force", action="store_true",
                         help="write into a non-empty folder (its .dcm files are replaced)")
    phantom.add_argument("--spacing", type=float, nargs=3, default=(1.5, 1.5, 2.5),
                         metavar=("COL_MM", "ROW_MM", "SLICE_MM"),
                         help="voxel size in mm (default 1.5 1.5 2.5)")
    phantom.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    phantom.set_defaults(func=run_phantom)

    imp = sub.add_parser(
        "import", help="import a DICOM folder (series + RTSTRUCT) into a case folder",
        description="Scan DIR (nested folders, any file names), validate the image series, "
                    "read the matching RTSTRUCT and save a case folder for fast loading.")
    imp.add_argument("source", type=Path, metavar="DIR", help="DICOM folder")
    imp.add_argument("--out", type=Path, required=True, metavar="CASE",
                     help="case folder to create (must be empty unless --force)")
    imp.add_argument("--series", metavar="UID", help="SeriesInstanceUID when DIR holds several")
    imp.add_argument("--resample", action="store_true",
                     help="interpolate non-uniform slice spacing instead of refusing")
    imp.add_argument("--force", action="store_true", help="overwrite a non-empty CASE folder")
    imp.set_defaults(func=run_import)


def run_phantom(args: argparse.Namespace) -> int:
    """Write the phantom as DICOM."""
    from models.dicom.writer import write_phantom

    out = write_phantom(args.out, spacing_mm=tuple(args.spacing), seed=args.seed,
                        force=args.force, progress=sys.stderr.isatty())
    count = len(list(out.glob("*.dcm")))
    print(f"wrote phantom (seed {args.seed}, spacing {' x '.join(map(str, args.spacing))} mm): "
          f"{count} DICOM files in {out}")
    return 0


def run_import(args: argparse.Namespace) -> int:
    """Import DICOM into a case folder."""
    from models.dicom.reader import read_case
    from models.dicom.writer import prepare_output_dir
    from models.patient.case_store import save_case

    if args.out.is_dir() and any(args.out.iterdir()) and not args.force:
        prepare_output_dir(args.out, force=False)  # raises the one-line refusal
    case = read_case(args.source, series_uid=args.series, resample=args.resample,
                     progress=sys.stderr.isatty())
    if case.ct.shape[0] < 2:
        raise InputError(f"{args.source}: only one {case.modality} slice; a case needs the "
                         "whole series (copy every slice of the series into the folder)")
    save_case(case, args.out, force=args.force)
    if not case.structures:
        print(f"iort: warning: {args.source}: no RTSTRUCT for this series: the case has no "
              "structures or fiducials (no target, no DVH, no pointer registration)",
              file=sys.stderr)
    spacing = " x ".join(f"{s:.3g}" for s in case.ct.spacing_mm)
    print(f"imported {case.modality} {case.ct.shape[2]}x{case.ct.shape[1]}x{case.ct.shape[0]} "
          f"({spacing} mm), {len(case.structures)} structures, {len(case.fiducials_lps)} "
          f"fiducials -> {args.out}")
    return 0
