"""The treatment record as a PDF a physicist signs (reportlab, no display needed).

:class:`ReportContent` holds what the record says, in human terms; it is filled from a
recorded session (:func:`content_from_session`) or by a program that has the numbers in
hand (the demo), and :func:`write_pdf` lays it out: patient and case, beam and monitor
units (an estimated output factor is flagged on the page), the confirmed pose and its
distance to the plan, registration quality, the DVH (the monitor's plot,
:func:`guidance.render.plots.render_dvh_plot`) with the coverage and organ-dose table
against the limits, screenshots, warnings and overrides with their reasons, versions, and a
signature block.

reportlab draws the PDF directly (pure Python, no browser or display): chosen over
weasyprint, which needs Pango/Cairo system libraries and an HTML detour.
"""

from __future__ import annotations

import datetime as _dt
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from guidance.render.plots import PRINT, render_dvh_plot
from models.base.errors import InputError
from models.base.files import private_file

#: Human labels of the beam and coverage keys the session log uses.
LABELS: dict[str, str] = {
    "machine": "Machine", "energy_mev": "Energy (MeV)",
    "applicator_diameter_mm": "Applicator diameter (mm)", "applicator_mm": "Applicator (mm)",
    "bevel_deg": "Bevel (deg)", "disc": "Shielding disc", "bolus_mm": "Bolus (mm)",
    "prescription_gy": "Prescription (Gy)", "isodose_percent": "Prescription isodose (%)",
    "mu": "Monitor units", "output_factor": "Output factor",
    "v90_percent": "V90 (%)", "d90_gy": "D90 (Gy)", "dmax_gy": "Dmax (Gy)",
    "d2_gy": "D2 (Gy)", "dmean_gy": "Dmean (Gy)", "dmin_gy": "Dmin (Gy)",
    "fre_mm": "FRE (mm)", "tre_predicted_mm": "Predicted TRE (mm)",
    "tre_mm": "TRE measured (mm)", "fiducials": "Fiducials", "method": "Method",
    "accepted": "Accepted", "attempts": "Attempts",
}
#: Decimals of the numbers that are not shown with two.
DIGITS: dict[str, int] = {"mu": 1, "output_factor": 3, "energy_mev": 0, "bevel_deg": 0,
                          "applicator_diameter_mm": 0, "isodose_percent": 0}


def label(key: str) -> str:
    """The human label of a key (the key with spaces when it has none)."""
    return LABELS.get(key, key.replace("_", " "))


@dataclass(frozen=True)
class CoverageRow:
    """One line of the coverage table: a structure's metric against its limit.

    ``limit`` None = no limit; ``passed`` None = not judged.
    """

    structure: str
    metric: str
    value: float
    limit: str = ""
    passed: bool | None = None


@dataclass(frozen=True)
class ReportContent:
    """What the treatment record says (every field optional but the title).

    Attributes
    ----------
    title : str
    patient : mapping label -> text
        Name, ID, case, session.
    beam : mapping key -> value
        Machine, energy, applicator, bevel, disc, bolus, prescription, MU (keys of
        :data:`LABELS`).
    planned_beam : mapping key -> value
        The plan's beam (same keys); when given, the table shows planned next to delivered
        and marks every difference.
    mu_estimated : bool
        The output factor behind the MU is an estimate (printed in red, "not for
        treatment").
    confirmed : list of mapping
        Each confirmation: time, distance/angle to the plan, user, override reason.
    registration : mapping key -> value
        Method, FRE, predicted TRE, accepted, per-fiducial residuals.
    dvh_curves : mapping name -> (dose_edges_gy, cumulative_percent)
    dvh_colors : mapping name -> RGB
    coverage : list of CoverageRow
    images : list of Path
        Screenshots (AR, slices) to include.
    warnings : list of str
    overrides : list of str
    notes : list of str
        Anything else the reader must know (e.g. what could not be recomputed).
    versions : mapping name -> version
    anatomy : list of str
        The intraoperative anatomy edits the dose was computed on, in order ("BOWEL moved
        35 mm, 4 deg, by tracked retractor").
    anatomy_doses : list of (name, dmax_gy, preoperative_dmax_gy)
        Organ maxima where the organs are now and where the preoperative CT saw them.
    mc_check : mapping, optional
        The Monte Carlo second check's result (``McCheckResult.as_json()``, with
        ``confirmed_number``), as the monitor recorded it.
    mc_check_note : str
        What happened to the Monte Carlo check when there is no result (not run, failed,
        cancelled, still running when the session ended); '' when it was not asked for.
    """

    title: str = "IORT treatment record"
    patient: Mapping[str, str] = field(default_factory=dict)
    beam: Mapping[str, object] = field(default_factory=dict)
    planned_beam: Mapping[str, object] = field(default_factory=dict)
    mu_estimated: bool = False
    confirmed: Sequence[Mapping[str, object]] = ()
    registration: Mapping[str, object] = field(default_factory=dict)
    dvh_curves: Mapping[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    dvh_colors: Mapping[str, tuple[int, int, int]] = field(default_factory=dict)
    prescription_gy: float | None = None
    coverage: Sequence[CoverageRow] = ()
    images: Sequence[Path] = ()
    warnings: Sequence[str] = ()
    overrides: Sequence[str] = ()
    notes: Sequence[str] = ()
    versions: Mapping[str, str] = field(default_factory=dict)
    anatomy: Sequence[str] = ()
    anatomy_doses: Sequence[tuple[str, float, float]] = ()
    mc_check: Mapping[str, object] | None = None
    mc_check_note: str = ""


def _text(value: object, digits: int = 2) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return "—" if not math.isfinite(value) else f"{value:.{digits}f}"
    return str(value)


def person_name(dicom_pn: str) -> str:
    """A DICOM person name (``Family^Given^Middle``) as people write it on paper.

    >>> person_name("Doe^Jane"), person_name("Phantom^Abdomen"), person_name("")
    ('Doe, Jane', 'Phantom, Abdomen', '—')
    """
    parts = [p for p in str(dicom_pn).split("^") if p]
    if not parts:
        return "—"
    return parts[0] if len(parts) == 1 else f"{parts[0]}, {' '.join(parts[1:])}"


def _dvh_png(content: ReportContent) -> bytes | None:
    if not content.dvh_curves:
        return None
    rgb = render_dvh_plot(content.dvh_curves, content.dvh_colors, size=(1000, 520),
                          legend=True, style=replace(PRINT, font_scale=0.8),
                          prescription_gy=content.prescription_gy)
    ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return png.tobytes() if ok else None


def _styles():
    from reportlab.lib import colors
    from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet

    sheet = getSampleStyleSheet()
    return {"title": sheet["Title"], "h2": sheet["Heading2"], "body": sheet["BodyText"],
            "warn": ParagraphStyle("warn", parent=sheet["BodyText"], textColor=colors.red),
            "small": ParagraphStyle("small", parent=sheet["BodyText"], fontSize=8,
                                    textColor=colors.grey)}


def _table(rows: Sequence[Sequence[str]], *, header: bool = True, widths=None):
    from reportlab.lib import colors
    from reportlab.platypus import Table, TableStyle

    table = Table([list(r) for r in rows], colWidths=widths, hAlign="LEFT")
    style = [("GRID", (0, 0), (-1, -1), 0.4, colors.grey),
             ("FONTSIZE", (0, 0), (-1, -1), 9), ("VALIGN", (0, 0), (-1, -1), "TOP")]
    if header:
        style += [("BACKGROUND", (0, 0), (-1, 0), colors.lightgrey),
                  ("FONTNAME", (0, 0), (-1, 0), "Helvetica-Bold")]
    table.setStyle(TableStyle(style))
    return table


def _image(data: bytes | Path, width_pt: float):
    from reportlab.platypus import Image

    source = io.BytesIO(data) if isinstance(data, bytes) else str(data)
    image = Image(source)
    scale = width_pt / image.imageWidth
    image.drawWidth, image.drawHeight = width_pt, image.imageHeight * scale
    return image


def _beam_section(content: ReportContent, st) -> list:
    from reportlab.platypus import Paragraph

    out = [Paragraph("Beam and monitor units", st["h2"])]
    order = list(LABELS)
    keys = sorted(content.beam, key=lambda k: order.index(k) if k in order else len(order))
    keys = [k for k in keys if k != "mu_estimated"]
    planned = content.planned_beam
    if planned:
        rows = [("", "Planned", "Delivered", "")]
        for k in keys:
            was, now = planned.get(k), content.beam[k]
            differs = k in planned and _text(was, DIGITS.get(k, 2)) != _text(
                now, DIGITS.get(k, 2))
            rows.append((label(k), _text(was, DIGITS.get(k, 2)) if k in planned else "",
                         _text(now, DIGITS.get(k, 2)), "DIFFERS" if differs else ""))
        out.append(_table(rows))
    else:
        out.append(_table([(label(k), _text(content.beam[k], DIGITS.get(k, 2)))
                           for k in keys], header=False))
    if content.mu_estimated:
        out.append(Paragraph("ESTIMATED output factor: the monitor units are not measured "
                             "and are not for treatment until the beam data are "
                             "commissioned.", st["warn"]))
    return out


def _confirm_section(content: ReportContent, st) -> list:
    from reportlab.platypus import Paragraph

    out = [Paragraph("Confirmed applicator pose", st["h2"])]
    if not content.confirmed:
        return [*out, Paragraph("No pose was confirmed in this session.", st["warn"])]
    rows = [("#", "time", "to plan (mm)", "to plan (deg)", "by", "override reason")]
    for n, c in enumerate(content.confirmed, 1):
        rows.append((str(n), _text(c.get("time")), _text(c.get("distance_to_plan_mm")),
                     _text(c.get("angle_to_plan_deg")), _text(c.get("user") or "—"),
                     _text(c.get("override_reason") or "—")))
    return [*out, _table(rows)]


def _coverage_section(content: ReportContent, st, width_pt: float) -> list:
    from reportlab.platypus import KeepTogether, Paragraph

    heading = Paragraph("Dose-volume histogram and coverage", st["h2"])
    png = _dvh_png(content)
    if png is None:
        out = [heading, Paragraph("No DVH in this record (no dose was recomputed).",
                                  st["body"])]
    else:
        out = [KeepTogether([heading, _image(png, width_pt)])]
    if content.coverage:
        rows = [("structure", "metric", "value", "limit", "within limit")]
        rows += [(r.structure, label(r.metric), _text(r.value), r.limit or "—",
                  "—" if r.passed is None else ("yes" if r.passed else "NO"))
                 for r in content.coverage]
        out.append(_table(rows))
    return out


def _anatomy_section(content: ReportContent, st) -> list:
    """The edits of the intraoperative anatomy, and organ doses now vs preoperative."""
    from reportlab.platypus import Paragraph

    if not content.anatomy:
        return []
    out = [Paragraph("Intraoperative anatomy", st["h2"]),
           Paragraph("The dose was computed on the preoperative CT edited as follows "
                     "(in order):", st["body"])]
    out += [Paragraph(f"{n}. {line}", st["body"]) for n, line in enumerate(content.anatomy, 1)]
    if content.anatomy_doses:
        rows = [("organ", "Dmax now (Gy)", "Dmax at the preoperative position (Gy)")]
        rows += [(name, _text(now), _text(before))
                 for name, now, before in content.anatomy_doses]
        out.append(_table(rows))
    return out


def _mc_rows(mc: Mapping[str, object]) -> list[tuple[str, str, str, str]]:
    """Pencil beam against Monte Carlo: gamma, target and organ rows of the table."""
    limits = dict(mc.get("thresholds") or {})
    target = str(mc.get("target", "target"))
    rows = [("", "pencil beam", "Monte Carlo", "limit"),
            ("gamma 3%/2mm pass (%)", "", _text(mc.get("gamma_3_2_percent"), 1),
             f">= {_text(limits.get('gamma_3_2_min_percent'), 0)}"),
            ("gamma 2%/2mm pass (%)", "", _text(mc.get("gamma_2_2_percent"), 1),
             f">= {_text(limits.get('gamma_2_2_min_percent'), 0)}"),
            (f"{target} D90 (Gy)", _text(mc.get("pb_d90_gy")), _text(mc.get("mc_d90_gy")),
             f"± {_text(limits.get('d90_max_percent'), 0)} % of Rx"),
            (f"{target} V90 (%)", _text(mc.get("pb_v90_percent"), 1),
             _text(mc.get("mc_v90_percent"), 1),
             f"± {_text(limits.get('v90_max_points'), 0)} points")]
    for organ in mc.get("organs") or ():
        if max(organ.get("pb_dmax_gy", 0.0), organ.get("mc_dmax_gy", 0.0)) <= 0.0:
            continue
        rows.append((f"{organ.get('name')} Dmax / D2 (Gy)",
                     f"{_text(organ.get('pb_dmax_gy'))} / {_text(organ.get('pb_d2_gy'))}",
                     f"{_text(organ.get('mc_dmax_gy'))} / {_text(organ.get('mc_d2_gy'))}",
                     f"± {_text(limits.get('organ_max_percent'), 0)} % of Rx"))
    return rows


def _mc_section(content: ReportContent, st) -> list:
    """The independent Monte Carlo check of the confirmed plan (or why there is none)."""
    from reportlab.platypus import Paragraph

    mc = content.mc_check
    if mc is None and not content.mc_check_note:
        return []
    out = [Paragraph("Independent Monte Carlo check", st["h2"])]
    if mc is None:
        return [*out, Paragraph(content.mc_check_note, st["warn"])]
    verdict = str(mc.get("verdict", "?")).upper()
    out.append(Paragraph(f"Confirm #{_text(mc.get('confirmed_number'), 0)}: verdict "
                         f"<b>{verdict}</b>", st["body" if verdict == "AGREE" else "warn"]))
    out += [Paragraph(f"- {r}", st["warn"]) for r in mc.get("reasons") or ()]
    disc = f", disc {mc['disc']}" if mc.get("disc") else ""
    out.append(Paragraph(
        f"ompmc, {_text(mc.get('histories'), 0)} histories in {_text(mc.get('mc_seconds'), 0)}"
        f" s; uncertainty in the {mc.get('target', 'target')} "
        f"{_text(mc.get('target_uncertainty_percent'), 1)} % (1 sigma); source "
        f"{mc.get('source_fluence') or 'as shipped'}"
        f"{'' if mc.get('source_commissioned') else ' (NOT commissioned)'}{disc}.",
        st["body"]))
    out.append(_table(_mc_rows(mc)))
    if content.mc_check_note:
        out.append(Paragraph(content.mc_check_note, st["warn"]))
    return out


def _signature_block(st) -> list:
    from reportlab.platypus import Paragraph

    rows = [("role", "name", "signature", "date")] + [
        (role, "", "", "") for role in ("Medical physicist", "Radiation oncologist",
                                        "Surgeon")]
    return [Paragraph("Signatures", st["h2"]), _table(rows, widths=(130, 130, 150, 80))]


def write_pdf(content: ReportContent, path: str | Path) -> Path:
    """Write the treatment record as a PDF (A4); returns the path.

    Raises
    ------
    InputError
        The file cannot be written.
    """
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.units import mm
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer

    path = Path(path)
    st = _styles()
    width_pt = A4[0] - 36 * mm
    story = [Paragraph(content.title, st["title"])]
    story.append(_table([(k, v) for k, v in content.patient.items()], header=False))
    story += [Paragraph(f"WARNING: {w}", st["warn"]) for w in content.warnings]
    story += _beam_section(content, st) + _confirm_section(content, st)
    if content.registration:
        story += [Paragraph("Registration", st["h2"]), _table(
            [(label(k), _text(v)) for k, v in content.registration.items()], header=False)]
    story += _coverage_section(content, st, width_pt)
    story += _anatomy_section(content, st)
    story += _mc_section(content, st)
    if content.overrides:
        story.append(Paragraph("Overrides", st["h2"]))
        story += [Paragraph(o, st["warn"]) for o in content.overrides]
    if content.images:
        story.append(Paragraph("Screenshots", st["h2"]))
        story += [_image(p, width_pt / 2) for p in content.images]
    story += [Paragraph(n, st["body"]) for n in content.notes]
    story += _signature_block(st)
    created = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    versions = ", ".join(f"{k} {v}" for k, v in content.versions.items())
    story += [Spacer(1, 6 * mm), Paragraph(f"Generated {created}. {versions}", st["small"])]
    try:
        private_file(path)   # owner-only before reportlab writes into it
        SimpleDocTemplate(str(path), pagesize=A4, leftMargin=18 * mm, rightMargin=18 * mm,
                          topMargin=15 * mm, bottomMargin=15 * mm,
                          title=content.title).build(story)
    except OSError as exc:
        raise InputError(f"report {path}: cannot write ({exc.strerror or exc})") from exc
    return path
