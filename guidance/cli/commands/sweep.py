"""``iort sweep``: robustness of a plan's coverage to registration and tracking error.

``iort sweep CASE --plan FILE --energy E --applicator D --tre-mm X --tracking-mm Y`` samples
applicator poses around the plan (:mod:`guidance.treatment.sweep`), computes each dose with
the pencil-beam engine on a Dask cluster (a local one by default, ``--scheduler ADDRESS``
for any other, ``--serial`` for none) and writes ``sweep.json`` (summary and every sample)
and ``sweep_dvh.png`` (DVH bands 5-95 % and the nominal curves). ``--cases DIR`` sweeps
every case folder in DIR, each with its own ``plan.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
from dataclasses import asdict
from pathlib import Path

from guidance.cli.inputs import PHANTOM, add_beam_arguments, load_case_spec, read_transform_file
from models.base.errors import InputError
from models.base.files import output_folder

log = logging.getLogger(__name__)

#: Plan file looked for in each case folder of ``--cases``.
CASE_PLAN = "plan.json"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``sweep`` subcommand."""
    parser = subparsers.add_parser(
        "sweep", help="robustness of coverage to registration/tracking error (Dask)",
        description="Sample applicator poses from the registration and tracking uncertainty, "
                    "compute the dose of each and report DVH bands (5-95 %%), the probability "
                    "that the target V90 >= 95 %% and organ Dmax percentiles. Runs on Dask: "
                    "a local cluster by default, --scheduler for any other.")
    parser.add_argument("case", nargs="?", metavar="CASE",
                        help="'phantom', a case folder or a DICOM folder (or use --cases)")
    parser.add_argument("--cases", type=Path, metavar="DIR",
                        help=f"sweep every case folder in DIR (each with its {CASE_PLAN})")
    parser.add_argument("--plan", type=Path, metavar="FILE",
                        help="JSON with the planned 4x4 'patient_from_applicator' (default: "
                             "the phantom's planned pose, phantom only)")
    add_beam_arguments(parser, machine_required=False)
    parser.add_argument("--tre-mm", type=float, required=True, metavar="MM",
                        help="3-D RMS target registration error (the session's predicted TRE)")
    parser.add_argument("--tracking-mm", type=float, required=True, metavar="MM",
                        help="3-D RMS applicator tracking error")
    parser.add_argument("--tilt-deg", type=float, default=0.5, metavar="DEG",
                        help="RMS tilt of the beam axis from tracking (default 0.5)")
    parser.add_argument("--bevel-roll-deg", type=float, default=0.0, metavar="DEG",
                        help="sigma of the roll about the beam axis (default 0)")
    parser.add_argument("--samples", type=int, default=100, metavar="N",
                        help="sampled poses (default 100)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    parser.add_argument("--prescription", type=float, default=10.0, metavar="GY",
                        help="dose at the 90 %% isodose in Gy (default 10)")
    parser.add_argument("--grid", type=float, default=2.0, metavar="MM",
                        help="dose grid spacing in mm (default 2)")
    parser.add_argument("--target", default="CTV", metavar="NAME",
                        help="target structure (default CTV)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDRESS",
                       help="Dask scheduler address (e.g. tcp://10.0.0.5:8786)")
    where.add_argument("--workers", type=int, default=2, metavar="N",
                       help="workers of the local Dask cluster (default 2)")
    where.add_argument("--serial", action="store_true",
                       help="compute in this process, without Dask (same numbers)")
    parser.add_argument("--out", type=Path, default=Path("iort_sweep"), metavar="DIR",
                        help="output folder (default ./iort_sweep)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Sweep one case or every case of ``--cases``."""
    from guidance.treatment.sweep import SweepOptions
    from models.beams.library import ElectronBeam, default_library

    if (args.case is None) == (args.cases is None):
        raise InputError("give either CASE or --cases DIR")
    beam = ElectronBeam(args.machine, args.energy, args.applicator, args.bevel)
    default_library().validate(beam)
    options = SweepOptions(tre_mm=args.tre_mm, tracking_mm=args.tracking_mm,
                           tilt_deg=args.tilt_deg, bevel_roll_deg=args.bevel_roll_deg,
                           samples=args.samples, seed=args.seed,
                           prescription_gy=args.prescription, grid_mm=args.grid)
    jobs = _jobs(args)
    output_folder(args.out)
    with _client(args) as client:
        summaries = {name: _sweep_one(spec, plan_file, beam, options, args, client,
                                      args.out / name if len(jobs) > 1 else args.out)
                     for name, (spec, plan_file) in jobs.items()}
    if args.json:
        print(json.dumps(summaries if len(jobs) > 1 else next(iter(summaries.values()))))
    return 0


def _jobs(args: argparse.Namespace) -> dict[str, tuple[str, Path | None]]:
    """name -> (CASE spec, plan file) for every case to sweep."""
    if args.case is not None:
        return {str(args.case): (str(args.case), args.plan)}
    if not args.cases.is_dir():
        raise InputError(f"--cases {args.cases}: not a folder")
    from models.patient.case_store import MANIFEST

    folders = sorted(p for p in args.cases.iterdir() if (p / MANIFEST).is_file())
    if not folders:
        raise InputError(f"--cases {args.cases}: no case folder (with {MANIFEST}) inside")
    for folder in folders:
        if args.plan is None and not (folder / CASE_PLAN).is_file():
            raise InputError(f"--cases: {folder} has no {CASE_PLAN}; write one (a JSON with "
                             "'patient_from_applicator') or give --plan for all")
    return {f.name: (str(f), args.plan or f / CASE_PLAN) for f in folders}


def _client(args: argparse.Namespace):
    """The Dask client (a context manager): none, a local cluster or a scheduler."""
    if args.serial:
        return contextlib.nullcontext()
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise InputError("the sweep runs on Dask: install the [dask] extra "
                         "(pip install 'iort-guidance[dask]') or use --serial") from exc
    if args.scheduler:
        try:
            return Client(args.scheduler, timeout="10s")
        except OSError as exc:
            raise InputError(f"--scheduler {args.scheduler}: cannot connect ({exc})") from exc
    if not 1 <= args.workers <= 64:
        raise InputError(f"--workers must be between 1 and 64, got {args.workers}")
    quiet = logging.DEBUG if args.debug else logging.WARNING
    logging.getLogger("distributed").setLevel(quiet)   # its own INFO handler otherwise
    cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                           dashboard_address=None, silence_logs=quiet)
    return _ClusterClient(cluster, Client(cluster))


class _ClusterClient:
    """A local cluster and its client, closed together."""

    def __init__(self, cluster, client) -> None:
        self.cluster, self.client = cluster, client

    def __enter__(self):
        return self.client

    def __exit__(self, *exc: object) -> None:
        self.client.close()
        self.cluster.close()


def _sweep_one(spec: str, plan_file: Path | None, beam, options, args: argparse.Namespace,
               client, out: Path) -> dict[str, float]:
    """Load, sweep, write sweep.json and sweep_dvh.png, print the table."""
    from guidance.treatment.sweep import run_sweep

    case = load_case_spec(spec)
    if plan_file is not None:
        pose = read_transform_file(plan_file, "patient_from_applicator", option="--plan")
    elif spec == PHANTOM:
        from models.patient.phantom import planned_patient_from_applicator

        pose = planned_patient_from_applicator(case)
    else:
        raise InputError("--plan FILE is required for a case (only the built-in phantom has "
                         "a planned pose)")
    result = run_sweep(case, beam, pose, options, target=args.target, client=client)
    out.mkdir(parents=True, exist_ok=True)
    summary = result.summary()
    record = {"case": spec, "beam": {"machine": beam.machine, "energy_mev": beam.energy_mev,
                                     "applicator_mm": beam.applicator_diameter_mm,
                                     "bevel_deg": beam.bevel_deg},
              "options": asdict(options),
              "summary": summary,
              "samples": [{"index": s.index, "v90_percent": s.v90_percent, "d90_gy": s.d90_gy,
                           "dmax_gy": s.dmax_gy, "d2_gy": s.d2_gy} for s in result.samples]}
    (out / "sweep.json").write_text(json.dumps(record, indent=1) + "\n")
    _write_plot(result, case, out / "sweep_dvh.png")
    if not args.json:
        _print_table(spec, result)
    return summary


def _write_plot(result, case, path: Path) -> None:
    import cv2

    from guidance.render.plots import PRINT, render_dvh_plot

    colors = {n: case.structures[n].color_rgb for n in result.structures}
    colors[result.target] = (220, 30, 30)
    axis = result.dose_axis_gy
    bands = {n: (axis, b[0], b[2]) for n in result.structures
             for b in [result.band(n)]}
    curves = {n: (axis, result.nominal.curves[n]) for n in result.structures}
    rgb = render_dvh_plot(curves, colors, size=(900, 480), legend=True, style=PRINT,
                          bands=bands, prescription_gy=result.options.prescription_gy)
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise InputError(f"--out: cannot write {path}")


def _print_table(spec: str, result) -> None:
    o = result.options
    print(f"{spec}: {len(result.samples)} poses, TRE {o.tre_mm:g} mm, tracking "
          f"{o.tracking_mm:g} mm, tilt {o.tilt_deg:g} deg, roll {o.bevel_roll_deg:g} deg")
    print(f"P(target V90 >= 95 %) = {100.0 * result.p_covered:.0f} %   "
          f"(nominal V90 {result.nominal.v90_percent[result.target]:.1f} %)")
    print(f"{'structure':<10} {'metric':<12} {'p5':>8} {'p50':>8} {'p95':>8}")
    for name in result.structures:
        metrics = ("v90_percent", "d90_gy") if name == result.target else ("dmax_gy",)
        for metric in metrics:
            p5, p50, p95 = result.percentiles(metric, name)
            print(f"{name:<10} {metric:<12} {p5:8.2f} {p50:8.2f} {p95:8.2f}")
