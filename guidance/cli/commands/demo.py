"""``iort demo``: the whole guidance loop on the built-in phantom."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from guidance.treatment.dose_service import DEFAULT_MACHINE
from models.base.errors import InputError

#: The plan file written into --out when the monitor runs on beam options.
PLAN_FILE = "plan.json"
#: demo option -> plan key (models/dicom/rt_export.py, the one plan format).
_BEAM_OPTIONS = {"machine": "machine", "energy": "energy_mev",
                 "applicator": "applicator_diameter_mm", "bevel": "bevel_deg",
                 "prescription": "prescription_gy"}


def _spacing(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"spacing {text!r} is not like 1.5x1.5x2.5") from None
    if len(values) != 3 or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"spacing {text!r} needs three positive numbers "
                                         "(column x row x slice, mm)")
    return values  # type: ignore[return-value]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``demo`` subcommand."""
    parser = subparsers.add_parser(
        "demo", help="run the whole guidance loop on the built-in phantom",
        description="Generate the phantom as DICOM, import it, simulate the tracked camera, "
                    "register, follow the applicator, compute dose and draw the overlay. "
                    "With a display it opens the OR monitor on the simulated procedure "
                    "(as 'iort run phantom'); without one (or with --headless) it writes "
                    "overlay_NNNN.png, demo.mp4, summary.json, report.html and a session "
                    "log to --out (with a display the session log goes there too).")
    parser.add_argument("--headless", action="store_true",
                        help="never open a window, even when a display exists")
    parser.add_argument("--frames", type=int, default=None,
                        help="frames to simulate (headless: 60; with a display the "
                             "procedure runs in real time until the window closes unless "
                             "given)")
    parser.add_argument("--out", type=Path, default=Path("demo_out"),
                        help="output folder, also of the session log (demo_out)")
    parser.add_argument("--seed", type=int, default=0, help="phantom and simulation seed (0)")
    parser.add_argument("--spacing", type=_spacing, default=None, metavar="CxRxS",
                        help="CT voxel size in mm (default 1.5x1.5x2.5)")
    plans = "default: the phantom plan's"
    parser.add_argument("--machine", default=None,
                        help=f"accelerator beam data ({plans}, {DEFAULT_MACHINE})")
    parser.add_argument("--energy", type=float, default=None,
                        help=f"electron energy, MeV ({plans}, 8)")
    parser.add_argument("--applicator", type=float, default=None,
                        help=f"applicator diameter, mm ({plans}, 70)")
    parser.add_argument("--bevel", type=float, default=None,
                        help=f"bevel angle, deg ({plans}, 0)")
    parser.add_argument("--prescription", type=float, default=None,
                        help=f"dose at the 90%% isodose, Gy ({plans}, 10). With a display "
                             "the beam options go into --out/plan.json, the plan the "
                             "monitor starts on")
    parser.add_argument("--field", choices=("plain", "realistic"), default="plain",
                        help="how the simulated camera renders the field: plain (the "
                             "phantom's skin) or realistic (open abdomen, retractors, moving "
                             "gloved hands, OR lighting; default plain)")
    parser.add_argument("--no-video", action="store_true", help="do not write demo.mp4")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def window_argv(args: argparse.Namespace) -> list[str]:
    """The ``iort run phantom`` command line of the demo with a display.

    Options the window cannot honour are refused (one line). Beam options become the plan
    file ``--out/plan.json`` (the phantom's planned pose with those beam values, the format
    ``iort run --plan`` reads), so the monitor starts on that beam.

    Raises
    ------
    InputError
        ``--spacing``, ``--seed`` or ``--no-video`` (headless only), an unknown beam, or an
        ``--out`` that cannot be written.
    """
    from guidance.record.session_log import session_log_path
    from models.beams.library import default_library

    headless_only = [name for name, given in (("--spacing", args.spacing is not None),
                                               ("--seed", args.seed != 0),
                                               ("--no-video", args.no_video)) if given]
    if headless_only:
        raise InputError(f"{', '.join(headless_only)}: only for the headless demo (the "
                         "monitor runs the standard phantom and writes no video); add "
                         "--headless or leave them out")
    argv = ["run", "phantom", "--source", "sim",
            *(["--frames", str(args.frames)] if args.frames is not None else []),
            "--field", args.field, "--session-log", str(session_log_path(folder=args.out))]
    overrides = {key: getattr(args, option) for option, key in _BEAM_OPTIONS.items()}
    if all(value is None for value in overrides.values()):
        return argv                              # the phantom's own plan
    from models.base.files import output_file
    from models.dicom.rt_export import resolve_plan, write_plan_file
    from models.patient.phantom import make_phantom

    spec = resolve_plan(make_phantom(), overrides=overrides)
    default_library().validate(spec.beam)
    plan = write_plan_file(spec, output_file(args.out / PLAN_FILE, what="--out"))
    return [*argv, "--plan", str(plan)]


def run(args: argparse.Namespace) -> int:
    """Run the demo; print where the results are and the key numbers."""
    from guidance.app.demo import DemoOptions, run_demo
    from models.beams.library import ElectronBeam, default_library
    from models.dicom.rt_export import PHANTOM_DEFAULTS
    from models.patient.phantom import DEFAULT_SPACING_MM

    if args.frames is not None and args.frames < 1:
        raise InputError(f"--frames must be at least 1, got {args.frames}")
    if not args.headless and os.environ.get("DISPLAY"):
        # a screen: the OR monitor on the simulated procedure, like `iort run phantom`,
        # with its session log in --out like the headless demo's
        from guidance.cli.main import main

        return main(window_argv(args))
    beam = {key: PHANTOM_DEFAULTS[key] if getattr(args, option) is None
            else getattr(args, option) for option, key in _BEAM_OPTIONS.items()}
    # check the beam choice before minutes of work (names the valid choices)
    default_library().validate(ElectronBeam(beam["machine"], beam["energy_mev"],
                                            beam["applicator_diameter_mm"],
                                            beam["bevel_deg"]))
    options = DemoOptions(out_dir=args.out, frames=60 if args.frames is None else args.frames,
                          spacing_mm=args.spacing or DEFAULT_SPACING_MM, seed=args.seed,
                          machine=beam["machine"], energy_mev=beam["energy_mev"],
                          applicator_mm=beam["applicator_diameter_mm"],
                          bevel_deg=beam["bevel_deg"],
                          prescription_gy=beam["prescription_gy"], video=not args.no_video,
                          progress=not args.quiet, field=args.field)
    result = run_demo(options)
    s = result.summary

    def num(key: str, unit: str, digits: int = 2) -> str:
        value = s.get(key)
        return "n/a" if value is None else f"{value:.{digits}f} {unit}"

    print(f"registration: FRE {num('registration.fre_mm', 'mm')}, "
          f"TRE at target {num('registration.tre_mm', 'mm')}")
    print(f"applicator:   position error {num('applicator.position_error_mm', 'mm')}, "
          f"angle error {num('applicator.angle_error_deg', 'deg')}")
    print(f"dose:         target V90 {num('dose.target_v90_percent', '%', 1)}, "
          f"{s.get('dose.updates', 0)} updates, median {num('timing.dose_ms', 'ms', 0)}")
    print(f"timing:       {s['timing.frames']} frames at {num('timing.fps', 'fps', 1)}, "
          f"whole run {num('timing.wall_s', 's', 1)}")
    print(f"wrote {result.out_dir}/ (overlay_*.png, "
          f"{'demo.mp4, ' if result.video else ''}summary.json, report.html)")
    return 0
