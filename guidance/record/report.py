"""Self-contained HTML report of a guidance run (demo, rehearsal, treatment record).

One file, no scripts, no network: numbers with units, the DVH plot the monitor draws
(embedded PNG, print colours) and links to the overlay images written beside it. A
physicist can read it in any browser and file it with the treatment record.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np

from guidance.render.plots import PRINT, render_dvh_plot
from models.base.files import write_private_text
from models.evaluation.dvh import DVH

_PALETTE = ((230, 25, 75), (245, 130, 49), (200, 170, 0), (60, 180, 75), (30, 160, 200),
            (67, 99, 216), (145, 30, 180), (240, 50, 230), (120, 120, 120))

_CSS = """
body { font-family: sans-serif; background: #15181c; color: #e8e8e8; margin: 2em; }
h1, h2 { font-weight: 500; }
table { border-collapse: collapse; margin: 1em 0; }
td, th { border: 1px solid #444; padding: 4px 10px; text-align: right; }
th { background: #262b31; } td:first-child, th:first-child { text-align: left; }
.warn { color: #ffb347; } .ok { color: #7fd67f; } .bad { color: #ff6b6b; }
img { max-width: 32%; margin: 2px; border: 1px solid #333; }
img.dvh { max-width: 100%; border: 0; }
"""


def _fmt(value: object, digits: int = 2) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return "—" if not np.isfinite(value) else f"{value:.{digits}f}"
    return html.escape(str(value))


def dvh_png_uri(dvhs: Mapping[str, DVH], *, prescription_gy: float | None = None,
                colors: Mapping[str, tuple[int, int, int]] | None = None,
                size: tuple[int, int] = (720, 380)) -> str:
    """The DVH plot (:func:`guidance.render.plots.render_dvh_plot`, print style, with a
    legend) as a ``data:image/png`` URI for an ``<img>``; empty without curves."""
    if not dvhs:
        return ""
    colors = dict(colors or {})
    for n, name in enumerate(dvhs):
        colors.setdefault(name, _PALETTE[n % len(_PALETTE)])
    curves = {name: (d.dose_edges_gy, d.cumulative_percent) for name, d in dvhs.items()}
    rgb = render_dvh_plot(curves, colors, size=size, prescription_gy=prescription_gy,
                          legend=True, style=PRINT)
    ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:  # pragma: no cover - OpenCV always encodes an RGB uint8 image
        raise RuntimeError("PNG encoding of the DVH plot failed")
    return "data:image/png;base64," + base64.b64encode(png.tobytes()).decode("ascii")


def write_report(path: Path, *, summary: Mapping[str, object], dvhs: Mapping[str, DVH],
                 images: Sequence[Path], warnings: Sequence[str] = (),
                 title: str = "IORT guidance report",
                 colors: Mapping[str, tuple[int, int, int]] | None = None,
                 anatomy: Sequence[str] = (),
                 preoperative: Mapping[str, DVH] | None = None) -> Path:
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
    title : str
    colors : mapping name -> RGB, optional
        DVH curve colours (the structures' own); a palette for the others.
    anatomy : sequence of str
        The intraoperative anatomy edits the dose was computed on ("BOWEL moved 35 mm,
        4 deg, by tracked retractor").
    preoperative : mapping name -> DVH, optional
        The same dose on the preoperative structure positions (Dmax shown beside).
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
    anatomy_html = _anatomy_html(anatomy, dvhs, preoperative or {})
    body = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_CSS}</style></head><body>
<h1>{html.escape(title)}</h1>
{warning_html}
<h2>Overlay</h2>
<p>Target (red), organs at risk, applicator and the prescription isodose drawn over the
undistorted camera view from the tracked pose.</p>
{''.join(f'<img src="{html.escape(p.name)}" alt="{html.escape(p.name)}">' for p in shown)}
{anatomy_html}
<h2>Dose-volume histograms</h2>
<p>Prescription {_fmt(rx, 1)} Gy at the 90 % isodose; V90 = share of the structure receiving at
least the prescription dose.</p>
<img class="dvh" alt="DVH" src="{dvh_png_uri(dvhs, colors=colors,
    prescription_gy=float(rx) if isinstance(rx, int | float) else None)}">
<table><tr><th>structure</th><th>volume (cc)</th><th>Dmean (Gy)</th><th>Dmax (Gy)</th>
<th>D2 (Gy)</th><th>D90 (Gy)</th><th>V90 (%)</th></tr>{''.join(dvh_rows)}</table>
<h2>Numbers</h2>
<table><tr><th>quantity</th><th>value</th></tr>{''.join(rows)}</table>
<p style="color:#888">Units: mm, deg, Gy, ms, s as in the key names. {html.escape(version_text)}</p>
</body></html>
"""
    return write_private_text(path, body)


def _anatomy_html(anatomy: Sequence[str], dvhs: Mapping[str, DVH],
                  preoperative: Mapping[str, DVH]) -> str:
    """The edit list and the organ maxima now vs at the preoperative position."""
    if not anatomy:
        return ""
    items = "".join(f"<li>{html.escape(line)}</li>" for line in anatomy)
    rows = "".join(
        f"<tr><td>{html.escape(n)}</td><td>{_fmt(dvhs[n].metrics.dmax_gy)}</td>"
        f"<td>{_fmt(d.metrics.dmax_gy)}</td></tr>"
        for n, d in preoperative.items() if n in dvhs)
    table = ("<table><tr><th>structure</th><th>Dmax now (Gy)</th><th>Dmax at the "
             f"preoperative position (Gy)</th></tr>{rows}</table>") if rows else ""
    return ("<h2>Intraoperative anatomy</h2><p>The dose was computed on the preoperative CT "
            f"edited as follows (in order):</p><ol>{items}</ol>{table}")
