"""``iort beam commission``: fit the electron beam model to measured or Monte Carlo data.

``iort beam commission --kali DIR | --csv FILE | --mcc FILE --machine liac
--out assets/beams/liac.json [--report DIR] [--leave-out MM] [--curves-out FILE]``

* ``--kali DIR``: the Kali MC ``kali_mc/data`` folder (``sim/C*/B*/*.npz`` dose in water and
  ``OF_C*.npz`` measured output factors, which are written too);
* ``--csv FILE`` (``depth_mm,dose``) or ``--mcc FILE`` (PTW water-tank scans) for one beam,
  with ``--energy``, ``--applicator`` and ``--bevel``.

The fitted parameters go into the ``commissioned`` block of ``--out`` (a copy of the
machine's file is made first when ``--out`` is a new path) with their provenance; the
report (HTML and PDF) into ``--report``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
from pathlib import Path

from models.base.errors import InputError

#: Licence notice of the public Kali MC data (MIT).
KALI_LICENCE = ("MIT License, Copyright (c) 2024 Hospital Universitario Gregorio Marañón - "
                "Salud Madrid - Servicio de Dosimetría y Radioprotección. Permission is "
                "granted, free of charge, to deal in the data without restriction, provided "
                "this copyright and permission notice is included; provided AS IS, without "
                "warranty of any kind.")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``beam`` subcommand with ``commission``."""
    parser = subparsers.add_parser(
        "beam", help="beam data: commission the electron model from measured/MC data",
        description="Beam data of the machines in assets/beams.")
    sub = parser.add_subparsers(dest="beam_command", metavar="ACTION")
    sub.required = True
    com = sub.add_parser(
        "commission", help="fit the pencil-beam model per energy/applicator/bevel",
        description="Fit the electron pencil-beam model to water data (Kali MC folder, a "
                    "depth-dose CSV or a PTW .mcc file), write it with provenance into the "
                    "machine file and optionally a report (HTML + PDF).")
    source = com.add_mutually_exclusive_group(required=True)
    source.add_argument("--kali", type=Path, metavar="DIR",
                        help="Kali MC kali_mc/data folder (sim/ and OF_C*.npz)")
    source.add_argument("--csv", type=Path, metavar="FILE", help="depth dose 'depth_mm,dose'")
    source.add_argument("--mcc", type=Path, metavar="FILE", help="PTW .mcc water-tank scans")
    com.add_argument("--machine", default="liac", help="machine (default liac)")
    com.add_argument("--out", type=Path, required=True, metavar="JSON",
                     help="machine file to write (e.g. assets/beams/liac.json)")
    com.add_argument("--report", type=Path, metavar="DIR",
                     help="write commissioning.html and commissioning.pdf here")
    com.add_argument("--leave-out", type=float, metavar="MM",
                     help="do not fit this applicator; predict it from the others")
    com.add_argument("--curves-out", type=Path, metavar="FILE",
                     help="also write the compact derived water curves (JSON)")
    com.add_argument("--energy", type=float, metavar="MEV", help="energy (--csv/--mcc)")
    com.add_argument("--applicator", type=float, metavar="MM", help="diameter (--csv/--mcc)")
    com.add_argument("--bevel", type=float, default=0.0, metavar="DEG",
                     help="bevel (--csv/--mcc, default 0)")
    com.set_defaults(func=run_commission)


def _read_curves(args: argparse.Namespace) -> tuple[list, str]:
    """The water curves and a one-line source text."""
    from models.beams import commissioning as com

    if args.kali is not None:
        sim = args.kali / "sim" if (args.kali / "sim").is_dir() else args.kali
        return com.read_kali_beam_curves_dir(sim), f"Kali MC dose in water ({args.kali})"
    if args.energy is None or args.applicator is None:
        raise InputError("--csv/--mcc need --energy MEV and --applicator MM (and --bevel)")
    if args.csv is not None:
        curve = com.csv_beam_curves(args.csv, energy_mev=args.energy,
                                    diameter_mm=args.applicator, bevel_deg=args.bevel)
        return [curve], f"depth-dose CSV {args.csv.name}"
    curve = com.read_mcc(args.mcc, energy_mev=args.energy, diameter_mm=args.applicator,
                         bevel_deg=args.bevel)
    return [curve], f"PTW mcc {args.mcc.name}"


def _provenance(source: str, args: argparse.Namespace, n: int) -> dict:
    return {
        "source": source,
        "licence": KALI_LICENCE if args.kali is not None else "the data owner's",
        "date": datetime.date.today().isoformat(),
        "fitted": (f"{n} combinations by `iort beam commission` "
                   "(models.dose.commission): per energy/applicator/bevel the broad-beam "
                   "depth dose (iterative deconvolution on the clinical axis), the fluence "
                   "across the aperture (and a bevel's heel-to-toe term) and the scale of the "
                   "multiple-scattering spread, on a 2 mm grid, model averaged over the data "
                   "voxels" + (f"; applicator {args.leave_out:g} mm left out"
                               if args.leave_out is not None else "")),
    }


def run_commission(args: argparse.Namespace) -> int:
    """Fit, write the machine file (and report), print the outcome."""
    from models.beams import commissioning as com
    from models.beams.library import default_library, read_machine_file
    from models.dose.commission import commission, pass_percent, write_commissioned

    curves, source = _read_curves(args)
    machine = default_library().machine(args.machine)
    out = args.out
    if not out.exists():
        if machine.source is None:
            raise InputError(f"--out {out}: machine {args.machine!r} has no file to copy")
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(machine.source, out)
    machine = read_machine_file(out)

    def progress(done: int, total: int, check) -> None:
        print(f"[{done}/{total}] {check.energy_mev:g} MeV {check.diameter_mm:g} mm "
              f"{check.bevel_deg:g} deg: dR90 {check.d_r90_mm:+.2f} dR50 {check.d_r50_mm:+.2f} "
              f"mm, gamma {check.gamma_depth_percent:.0f}/{check.gamma_x_percent:.0f}/"
              f"{check.gamma_y_percent:.0f} % {'pass' if check.passed else 'FAIL'}",
              flush=True)

    run = commission(curves, machine, leave_out_mm=args.leave_out, progress=progress)
    provenance = _provenance(source, args, len(run.entries))
    write_commissioned(out, run.entries, provenance=provenance)
    if args.kali is not None and list(args.kali.glob("OF_C*.npz")):
        com.write_output_factors(
            out, com.read_kali_output_factor_dir(args.kali), source=source,
            licence=KALI_LICENCE, date=provenance["date"],
            derived="OF_C<n>.npz 'OFs'[bevel, energy] copied unchanged; C<n> = n*10 mm")
    if args.curves_out is not None:
        com.write_beam_curves(args.curves_out, curves, provenance={
            k: v for k, v in provenance.items() if k != "fitted"} | {
            "derived": "clinical-axis depth dose and x/y profiles at half R50 "
                       "(models.beams.commissioning.kali_beam_curves)"})
    checks = [r[1] for r in run.fitted]
    summary = {"fitted": len(checks), "pass_percent": round(pass_percent(checks), 1),
               "out": str(out)}
    if run.predicted:
        p = [r[1] for r in run.predicted]
        summary["left_out_mm"] = args.leave_out
        summary["left_out_max_abs_dR50_mm"] = round(max(abs(c.d_r50_mm) for c in p), 2)
        summary["left_out_min_gamma_percent"] = round(min(
            min(c.gamma_depth_percent, c.gamma_x_percent, c.gamma_y_percent) for c in p), 1)
    if args.report is not None:
        from models.dose.commission_report import write_report

        html_path, pdf_path = write_report(args.report, read_machine_file(out), run.fitted,
                                           run.predicted, provenance=json.dumps(provenance))
        summary["report"] = [str(html_path), str(pdf_path)]
    print(json.dumps(summary))
    return 0
