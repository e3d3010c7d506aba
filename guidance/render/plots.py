"""The dose-volume histogram plot, one drawing for the OR monitor and the report.

:func:`render_dvh_plot` draws cumulative DVHs (volume % vs dose Gy) as an RGB image with
OpenCV (no Qt, no matplotlib): the monitor shows it in its DVH panel on a dark background,
the report embeds the same image as PNG on a light one (:data:`PRINT`), so a physicist
sees the same plot on screen and on paper.

Examples
--------
>>> edges = np.linspace(0.0, 12.0, 121)
>>> ctv = np.clip(100.0 * (12.0 - edges) / 2.0, 0.0, 100.0)
>>> img = render_dvh_plot({"CTV": (edges, ctv)}, {"CTV": (230, 40, 40)}, size=(320, 200))
>>> img.shape, img.dtype.name
((200, 320, 3), 'uint8')
>>> dvh_axes((320, 200), 12.0).dose_ticks_gy
(0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import cv2
import numpy as np

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class PlotStyle:
    """Colours (RGB 0-255) and text scale of a plot."""

    background: RGB
    grid: RGB
    text: RGB
    prescription: RGB
    font_scale: float = 0.45


#: For the OR monitor's dark panels.
SCREEN = PlotStyle(background=(24, 24, 24), grid=(70, 70, 70), text=(200, 200, 200),
                   prescription=(255, 255, 255))
#: For the OR monitor's DVH, read from about 3 m: tick digits ~16 px high at 1:1.
SCREEN_LARGE = PlotStyle(background=SCREEN.background, grid=SCREEN.grid, text=SCREEN.text,
                         prescription=SCREEN.prescription, font_scale=1.0)
#: For the report (printed, light background).
PRINT = PlotStyle(background=(255, 255, 255), grid=(215, 215, 215), text=(40, 40, 40),
                  prescription=(90, 90, 90))


@dataclass(frozen=True)
class DvhAxes:
    """Pixel layout of a DVH plot: the plot area and the ticks.

    Attributes
    ----------
    left, right, top, bottom : int
        Plot area in pixels (x grows right, y grows down).
    max_dose_gy : float
        Dose at the right edge.
    dose_ticks_gy : tuple of float
        Dose-axis ticks ("nice" steps of 1, 2 or 5 x 10^n).
    """

    left: int
    right: int
    top: int
    bottom: int
    max_dose_gy: float
    dose_ticks_gy: tuple[float, ...]

    def xy(self, dose_gy: np.ndarray, percent: np.ndarray) -> np.ndarray:
        """(N, 2) int32 pixel points of doses (Gy) and volume percentages."""
        x = self.left + (self.right - self.left) * np.asarray(dose_gy) / self.max_dose_gy
        y = self.bottom - (self.bottom - self.top) * np.asarray(percent) / 100.0
        return np.stack([np.ravel(x), np.ravel(y)], axis=1).round().astype(np.int32)


def nice_step(span: float, *, ticks: int = 5) -> float:
    """Tick step of 1, 2 or 5 x 10^n giving about ``ticks`` intervals over ``span``.

    >>> nice_step(12.0), nice_step(0.7), nice_step(35.0)
    (5.0, 0.2, 10.0)
    """
    raw = span / ticks
    base = 10.0 ** np.floor(np.log10(raw))
    for mult in (1.0, 2.0, 5.0, 10.0):
        if raw <= mult * base:
            return float(mult * base)
    return float(10.0 * base)


def dvh_axes(size: tuple[int, int], max_dose_gy: float, *, legend_px: int = 0,
             font_scale: float = SCREEN.font_scale) -> DvhAxes:
    """Layout of a DVH plot of ``size`` (width, height) px up to ``max_dose_gy``;
    ``legend_px`` keeps that many pixels free on the right for the legend; the margins
    grow with the text (``font_scale`` of the style)."""
    width, height = (int(v) for v in size)
    top_dose = max(float(max_dose_gy), 1e-6)
    step = nice_step(top_dose, ticks=6)
    ticks = tuple(round(k * step, 10) for k in range(int(top_dose / step + 1e-9) + 1))
    right = width - int(3 + 20 * font_scale) - legend_px   # room for the last tick label
    return DvhAxes(left=int(30 + 40 * font_scale), right=right, top=12,
                   bottom=height - int(17 + 29 * font_scale), max_dose_gy=top_dose,
                   dose_ticks_gy=ticks)


def legend_width_px(names, style: PlotStyle) -> int:
    """Pixels the legend of ``names`` takes right of the plot."""
    return 12 + int(20 * style.font_scale) * max((len(n) for n in names), default=0)


def render_dvh_plot(curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
                    colors: Mapping[str, RGB], *, size: tuple[int, int],
                    max_dose_gy: float | None = None, prescription_gy: float | None = None,
                    legend: bool = False, style: PlotStyle = SCREEN,
                    bands: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None
                    ) -> np.ndarray:
    """Cumulative DVH plot as an RGB image.

    Parameters
    ----------
    curves : mapping name -> (dose_edges_gy, cumulative_percent)
        Each curve as from :class:`models.evaluation.dvh.DVH` (``dose_edges_gy``,
        ``cumulative_percent``).
    colors : mapping name -> RGB 0-255
        Curve colours (white for a name not given).
    size : (width, height) in pixels
    max_dose_gy : float, optional
        Right end of the dose axis (default: largest dose in the curves).
    prescription_gy : float, optional
        Drawn as a vertical dashed line.
    legend : bool
        Name every curve in its colour on the right.
    style : PlotStyle
        :data:`SCREEN` (default) or :data:`PRINT`.
    bands : mapping name -> (dose_gy, lower_percent, upper_percent), optional
        Uncertainty bands (e.g. the 5-95 % DVH band of a robustness sweep), filled in a
        light shade of the curve's colour under the curves.
    """
    width, height = (int(v) for v in size)
    img = np.empty((height, width, 3), np.uint8)
    img[:] = style.background
    legend_px = legend_width_px(curves, style) if legend else 0
    top_dose = max_dose_gy or max((float(e[-1]) for e, _ in curves.values()), default=1.0)
    axes = dvh_axes(size, top_dose, legend_px=legend_px, font_scale=style.font_scale)
    _draw_grid(img, axes, style)
    for name, (dose_gy, lower, upper) in (bands or {}).items():
        color = np.array(colors.get(name, (255, 255, 255)), np.float64)
        shade = tuple(int(c) for c in 0.35 * color + 0.65 * np.array(style.background))
        outline = np.concatenate([axes.xy(dose_gy, upper), axes.xy(dose_gy, lower)[::-1]])
        cv2.fillPoly(img, [outline], shade, cv2.LINE_AA)
    if prescription_gy:
        x = int(axes.xy(np.array([prescription_gy]), np.zeros(1))[0, 0])
        for y in range(axes.top, axes.bottom, 8):
            cv2.line(img, (x, y), (x, min(y + 4, axes.bottom)), style.prescription, 1)
    for n, (name, (edges, percent)) in enumerate(curves.items()):
        color = tuple(int(c) for c in colors.get(name, (255, 255, 255)))
        cv2.polylines(img, [axes.xy(edges, percent)], False, color, 2, cv2.LINE_AA)
        if legend:
            y = axes.top + 10 + int(40 * style.font_scale) * n
            cv2.line(img, (axes.right + 10, y - 4), (axes.right + 26, y - 4), color, 3)
            cv2.putText(img, name, (axes.right + 30, y), cv2.FONT_HERSHEY_SIMPLEX,
                        style.font_scale, style.text, 1, cv2.LINE_AA)
    return img


def _draw_grid(img: np.ndarray, axes: DvhAxes, style: PlotStyle) -> None:
    """Volume grid lines every 25 %, dose ticks, axis units."""
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, style.font_scale
    for pct in (0, 25, 50, 75, 100):
        y = round(axes.bottom - (axes.bottom - axes.top) * pct / 100.0)
        cv2.line(img, (axes.left, y), (axes.right, y), style.grid, 1)
        cv2.putText(img, f"{pct}%", (4, y + 4), font, scale * 0.8, style.text, 1, cv2.LINE_AA)
    for dose in axes.dose_ticks_gy:
        x = int(axes.xy(np.array([dose]), np.zeros(1))[0, 0])
        cv2.line(img, (x, axes.bottom), (x, axes.bottom + 4), style.text, 1)
        cv2.putText(img, f"{dose:g}", (x - 8, axes.bottom + int(36 * scale)), font, scale * 0.8,
                    style.text, 1, cv2.LINE_AA)
    # the unit left of the dose axis, where no tick label can run into it
    cv2.putText(img, "Gy", (4, img.shape[0] - 4), font, scale * 0.8, style.text, 1,
                cv2.LINE_AA)


def render_progress_plot(totals: list[float], *, size: tuple[int, int] = (720, 360),
                         style: PlotStyle = PRINT, color: RGB = (30, 90, 200),
                         top: float = 100.0) -> np.ndarray:
    """A score (0 to ``top``) per session as a line with dots, oldest left (RGB image)."""
    width, height = (int(v) for v in size)
    img = np.empty((height, width, 3), np.uint8)
    img[:] = style.background
    left, right, up, bottom = 48, width - 16, 14, height - 30
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, style.font_scale
    for value in np.linspace(0.0, top, 5):
        y = round(bottom - (bottom - up) * float(value) / top)
        cv2.line(img, (left, y), (right, y), style.grid, 1)
        cv2.putText(img, f"{value:g}", (6, y + 4), font, scale * 0.8, style.text, 1,
                    cv2.LINE_AA)
    n = len(totals)
    xs = [left + (right - left) * (k / max(n - 1, 1)) for k in range(n)]
    pts = np.array([[x, bottom - (bottom - up) * float(np.clip(v, 0, top)) / top]
                    for x, v in zip(xs, totals, strict=True)]).round().astype(np.int32)
    if n > 1:
        cv2.polylines(img, [pts], False, color, 2, cv2.LINE_AA)
    for k, (x, y) in enumerate(pts):
        cv2.circle(img, (int(x), int(y)), 4, color, -1, cv2.LINE_AA)
        cv2.putText(img, str(k + 1), (int(x) - 4, bottom + 18), font, scale * 0.8,
                    style.text, 1, cv2.LINE_AA)
    cv2.putText(img, "session", (right - 60, height - 4), font, scale, style.text, 1,
                cv2.LINE_AA)
    return img
