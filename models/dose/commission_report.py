"""Commissioning report: model against data, as HTML (embedded PNG) and PDF.

One page per combination (depth dose with residuals, the x and y profiles, the check's
numbers), a summary table, and the output-factor table of the machine. Needs matplotlib
(the ``report`` extra).
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from models.base.errors import InputError
from models.beams.commissioning import BeamCurves
from models.beams.library import MachineData
from models.dose.commission import Comparison, ModelCurves, pass_percent

Row = tuple[BeamCurves, Comparison, ModelCurves]


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise InputError("the commissioning report needs matplotlib: pip install "
                         "'iort-guidance[report]' (or leave out --report)") from exc
    return plt


def _title(c: Comparison, label: str) -> str:
    return (f"{label}{c.energy_mev:g} MeV, {c.diameter_mm:g} mm, bevel {c.bevel_deg:g} deg: "
            f"dR90 {c.d_r90_mm:+.2f}, dR50 {c.d_r50_mm:+.2f} mm, surface "
            f"{c.d_surface_percent:+.1f} %, gamma 2%/2mm {c.gamma_depth_percent:.0f} / "
            f"{c.gamma_x_percent:.0f} / {c.gamma_y_percent:.0f} % "
            f"({'pass' if c.passed else 'FAIL'})")


def _figure(plt, row: Row, label: str):
    data, check, mc = row
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    ax = axes[0]
    ax.plot(data.depth_mm, data.depth_dose_percent, "o", ms=3, label="data")
    ax.plot(mc.fine_depth_mm, mc.fine_depth_dose, "-", lw=1, label="model")
    ax.plot(data.depth_mm, mc.depth_dose - data.depth_dose_percent, "r.-", lw=0.6, ms=2,
            label="model - data")
    ax.axhline(0.0, color="grey", lw=0.5)
    ax.set_xlabel("depth (mm)")
    ax.set_ylabel("% of maximum")
    ax.legend(fontsize=7)
    for ax, pos, val, fine, model in ((axes[1], data.x_mm, data.profile_x_percent,
                                       mc.fine_profile_x, mc.profile_x),
                                      (axes[2], data.y_mm, data.profile_y_percent,
                                       mc.fine_profile_y, mc.profile_y)):
        ax.plot(pos, val, "o", ms=3)
        ax.plot(mc.fine_lateral_mm, fine, "-", lw=1)
        if pos.size:
            ax.plot(pos, model - val, "r.-", lw=0.6, ms=2)
        ax.axhline(0.0, color="grey", lw=0.5)
        ax.set_xlabel(f"{'x' if ax is axes[1] else 'y (toe +)'} (mm) at "
                      f"{data.profile_depth_mm:.1f} mm")
    fig.suptitle(_title(check, label), fontsize=8)
    fig.tight_layout()
    return fig


def _summary_html(rows: list[Row], predicted: list[Row]) -> str:
    checks = [r[1] for r in rows]
    out = [f"<p>{len(checks)} combinations fitted, {pass_percent(checks):.1f} % meet every "
           "water criterion (|dR90|, |dR50| &le; 1 mm, surface &le; 2 %, gamma 2 %/2 mm "
           "&ge; 95 % on the depth dose and both profiles).</p>"]
    if checks:
        out.append("<p>Worst: |dR90| {:.2f} mm, |dR50| {:.2f} mm, surface {:.2f} %, gamma "
                   "{:.1f} %.</p>".format(
                       max(abs(c.d_r90_mm) for c in checks),
                       max(abs(c.d_r50_mm) for c in checks),
                       max(abs(c.d_surface_percent) for c in checks),
                       min(min(c.gamma_depth_percent, c.gamma_x_percent, c.gamma_y_percent)
                           for c in checks)))
    if predicted:
        p = [r[1] for r in predicted]
        out.append("<p>Left-out applicator {:g} mm, predicted from the others: worst |dR50| "
                   "{:.2f} mm, worst gamma {:.1f} %.</p>".format(
                       p[0].diameter_mm, max(abs(c.d_r50_mm) for c in p),
                       min(min(c.gamma_depth_percent, c.gamma_x_percent, c.gamma_y_percent)
                           for c in p)))
    out.append("<table border=1 cellspacing=0><tr><th>E MeV</th><th>mm</th><th>bevel</th>"
               "<th>dR90</th><th>dR50</th><th>surface</th><th>gamma depth / x / y</th>"
               "<th></th></tr>")
    for c in checks + [r[1] for r in predicted]:
        out.append(f"<tr><td>{c.energy_mev:g}</td><td>{c.diameter_mm:g}</td>"
                   f"<td>{c.bevel_deg:g}</td><td>{c.d_r90_mm:+.2f}</td>"
                   f"<td>{c.d_r50_mm:+.2f}</td><td>{c.d_surface_percent:+.2f}</td>"
                   f"<td>{c.gamma_depth_percent:.0f} / {c.gamma_x_percent:.0f} / "
                   f"{c.gamma_y_percent:.0f}</td><td>{'pass' if c.passed else 'FAIL'}</td>"
                   "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _output_factor_html(machine: MachineData) -> str:
    rows = ["<table border=1 cellspacing=0><tr><th>E MeV</th><th>mm</th><th>bevel</th>"
            "<th>output factor</th><th>estimated</th></tr>"]
    for key in sorted(machine.output_factors):
        rows.append(f"<tr><td>{key[0]:g}</td><td>{key[1]:g}</td><td>{key[2]:g}</td>"
                    f"<td>{machine.output_factors[key]:.4f}</td>"
                    f"<td>{'yes' if key in machine.estimated_output_factors else ''}</td></tr>")
    rows.append("</table>")
    return "\n".join(rows)


def write_report(directory: Path | str, machine: MachineData, rows: list[Row],
                 predicted: list[Row] | None = None, *, provenance: str = ""
                 ) -> tuple[Path, Path]:
    """Write ``commissioning.html`` and ``commissioning.pdf`` into ``directory``.

    Returns the two paths.
    """
    from matplotlib.backends.backend_pdf import PdfPages

    plt = _pyplot()
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    predicted = predicted or []
    html_path, pdf_path = out / "commissioning.html", out / "commissioning.pdf"
    parts = [f"<html><head><meta charset='utf-8'><title>Commissioning {machine.name}</title>"
             f"</head><body><h1>Commissioning report: {html.escape(machine.name)}</h1>",
             f"<p>{html.escape(provenance)}</p>", _summary_html(rows, predicted)]
    with PdfPages(pdf_path) as pdf:
        text = plt.figure(figsize=(8.3, 4))
        checks = [r[1] for r in rows]
        text.text(0.05, 0.9, f"Commissioning {machine.name}: {len(checks)} combinations, "
                  f"{pass_percent(checks):.1f} % pass", fontsize=11)
        text.text(0.05, 0.1, "\n".join(_wrap(provenance, 110)[:20]), fontsize=6)
        pdf.savefig(text)
        plt.close(text)
        for row, label in [(r, "") for r in rows] + [(r, "PREDICTED ") for r in predicted]:
            fig = _figure(plt, row, label)
            pdf.savefig(fig)
            buffer = io.BytesIO()
            fig.savefig(buffer, format="png", dpi=60)
            plt.close(fig)
            encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
            parts.append(f"<h3>{html.escape(_title(row[1], label))}</h3>"
                         f"<img src='data:image/png;base64,{encoded}'/>")
    parts += ["<h2>Output factors</h2>", _output_factor_html(machine), "</body></html>"]
    html_path.write_text("\n".join(parts), encoding="utf-8")
    return html_path, pdf_path


def _wrap(text: str, width: int) -> list[str]:
    words, lines, line = text.split(), [], ""
    for word in words:
        if len(line) + len(word) + 1 > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return lines + ([line] if line else [])


__all__ = ["write_report"]
