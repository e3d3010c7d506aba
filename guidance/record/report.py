"""Self-contained HTML report of a guidance run (demo, rehearsal, treatment record).

One file, no scripts, no network: numbers with units, the DVH as an inline SVG, and links
to the overlay images written beside it. A physicist can read it in any browser and file it
with the treatment record.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from models.evaluation.dvh import DVH

_PALETTE = ("#e6194b", "#f58231", "#ffe119", "#3cb44b", "#42d4f4", "#4363d8", "#911eb4",
            "#f032e6", "#a9a9a9")

_CSS = """
body { font-family: sans-serif; background: #15181c; color: #e8e8e8; margin: 2em; }
h1, h2 { font-weight: 500; }
table { border-collapse: collapse; margin: 1em 0; }
td, th { border: 1px solid #444; padding: 4px 10px; text-align: right; }
th { background: #262b31; } td:first-child, th:first-child { text-align: left; }
.warn { color: #ffb347; } .ok { color: #7fd67f; } .bad { color: #ff6b6b; }
img { max-width: 32%; margin: 2px; border: 1px solid #333; }
svg { background: #1d2126; }
"""


def _fmt(value: object, digits: int = 2) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return "—" if not np.isfinite(value) else f"{value:.{digits}f}"
    return html.escape(str(value))


def dvh_svg(dvhs: Mapping[str, DVH], *, prescription_gy: float | None = None,
            width: int = 640, height: int = 360) -> str:
    """Cumulative DVHs (volume % vs dose Gy) as an SVG string."""
    if not dvhs:
        return ""
    left, bottom, top, right = 50, 40, 10, 130
    max_dose = max(float(d.dose_edges_gy[-1]) for d in dvhs.values()) or 1.0
    plot_w, plot_h = width - left - right, height - top - bottom

    def xy(dose: float, percent: float) -> tuple[float, float]:
        return left + plot_w * dose / max_dose, top + plot_h * (1.0 - percent / 100.0)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">']
    for pct in (0, 25, 50, 75, 100):
        x0, y0 = xy(0.0, pct)
        parts.append(f'<line x1="{x0}" y1="{y0}" x2="{left + plot_w}" y2="{y0}" '
                     'stroke="#333"/>')
        parts.append(f'<text x="{x0 - 6}" y="{y0 + 4}" fill="#aaa" font-size="11" '
                     f'text-anchor="end">{pct}</text>')
    for k in range(6):
        dose = max_dose * k / 5
        x0, y0 = xy(dose, 0.0)
        parts.append(f'<text x="{x0}" y="{y0 + 16}" fill="#aaa" font-size="11" '
                     f'text-anchor="middle">{dose:.1f}</text>')
    parts.append(f'<text x="{left + plot_w / 2}" y="{height - 5}" fill="#ccc" font-size="12" '
                 'text-anchor="middle">dose (Gy)</text>')
    parts.append(f'<text x="12" y="{top + plot_h / 2}" fill="#ccc" font-size="12" '
                 f'transform="rotate(-90 12 {top + plot_h / 2})" text-anchor="middle">'
                 'volume (%)</text>')
    if prescription_gy:
        x0, _ = xy(prescription_gy, 0.0)
        parts.append(f'<line x1="{x0}" y1="{top}" x2="{x0}" y2="{top + plot_h}" '
                     'stroke="#888" stroke-dasharray="4 3"/>')
    for n, (name, dvh) in enumerate(dvhs.items()):
        colour = _PALETTE[n % len(_PALETTE)]
        doses = dvh.dose_edges_gy
        percent = dvh.cumulative_percent
        step = max(1, len(doses) // 400)
        points = " ".join(f"{x:.1f},{y:.1f}" for x, y in
                          (xy(float(d), float(p)) for d, p in zip(doses[::step],
                                                                   percent[::step],
                                                                   strict=True)))
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" '
                     f'points="{points}"/>')
        ly = top + 14 + 16 * n
        parts.append(f'<line x1="{left + plot_w + 10}" y1="{ly - 4}" x2="{left + plot_w + 30}"'
                     f' y2="{ly - 4}" stroke="{colour}" stroke-width="3"/>')
        parts.append(f'<text x="{left + plot_w + 35}" y="{ly}" fill="#ddd" font-size="12">'
                     f'{html.escape(name)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def write_report(path: Path, *, summary: Mapping[str, object], dvhs: Mapping[str, DVH],
                 images: Sequence[Path], warnings: Sequence[str] = (),
                 title: str = "IORT guidance report") -> Path:
    """Write the HTML report.

    Parameters
    ----------
    path : Path
        Output file (``report.html``); images are linked relative to its folder.
    summary : mapping
        Flat ``"group.metric": value`` numbers (as in ``summary.json``).
    dvhs : mapping name -> DVH
        Structures to tabulate and plot (first is the target).
    images : sequence of Path
        Overlay images; a few evenly spaced ones are shown.
    warnings : sequence of str
        Shown prominently at the top.
    """
    path = Path(path)
    rows = []
    for key, value in summary.items():
        if key == "versions" or isinstance(value, dict | list):
            continue
        rows.append(f"<tr><td>{html.escape(key)}</td><td>{_fmt(value)}</td></tr>")
    dvh_rows = []
    for name, dvh in dvhs.items():
        m = dvh.metrics
        dvh_rows.append(
            f"<tr><td>{html.escape(name)}</td><td>{_fmt(m.volume_cc, 1)}</td>"
            f"<td>{_fmt(m.dmean_gy)}</td><td>{_fmt(m.dmax_gy)}</td><td>{_fmt(m.d2_gy)}</td>"
            f"<td>{_fmt(m.d90_gy)}</td><td>{_fmt(m.v90_percent, 1)}</td></tr>")
    shown = list(images)
    if len(shown) > 6:
        picks = np.linspace(0, len(shown) - 1, 6).round().astype(int)
        shown = [shown[i] for i in picks]
    versions = summary.get("versions", {})
    version_text = ", ".join(f"{k} {v}" for k, v in versions.items()) \
        if isinstance(versions, dict) else ""
    warning_html = "".join(f'<p class="warn">&#9888; {html.escape(w)}</p>' for w in warnings)
    rx = summary.get("beam.prescription_gy")
    body = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_CSS}</style></head><body>
<h1>{html.escape(title)}</h1>
{warning_html}
<h2>Overlay</h2>
<p>Target (red), organs at risk, applicator and the prescription isodose drawn over the
undistorted camera view from the tracked pose.</p>
{''.join(f'<img src="{html.escape(p.name)}" alt="{html.escape(p.name)}">' for p in shown)}
<h2>Dose-volume histograms</h2>
<p>Prescription {_fmt(rx, 1)} Gy at the 90 % isodose; V90 = share of the structure receiving at
least the prescription dose.</p>
{dvh_svg(dvhs, prescription_gy=float(rx) if isinstance(rx, int | float) else None)}
<table><tr><th>structure</th><th>volume (cc)</th><th>Dmean (Gy)</th><th>Dmax (Gy)</th>
<th>D2 (Gy)</th><th>D90 (Gy)</th><th>V90 (%)</th></tr>{''.join(dvh_rows)}</table>
<h2>Numbers</h2>
<table><tr><th>quantity</th><th>value</th></tr>{''.join(rows)}</table>
<p style="color:#888">Units: mm, deg, Gy, ms, s as in the key names. {html.escape(version_text)}</p>
</body></html>
"""
    path.write_text(body, encoding="utf-8")
    return path
