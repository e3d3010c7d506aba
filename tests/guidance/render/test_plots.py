"""The DVH plot shared by the monitor and the report."""

from __future__ import annotations

import numpy as np

from guidance.render.plots import PRINT, dvh_axes, legend_width_px, render_dvh_plot


def test_dvh_plot_draws_curves() -> None:
    edges = np.linspace(0, 12, 121)
    ctv = np.clip(100.0 * (12 - edges) / 2.0, 0, 100)
    img = render_dvh_plot({"CTV": (edges, ctv)}, {"CTV": (230, 40, 40)}, size=(320, 200),
                          prescription_gy=10.0)
    assert img.shape == (200, 320, 3)
    red = np.all(img == (230, 40, 40), axis=2)
    assert red.sum() > 100
    # the 100 % plateau is at the top row of the plot area (y = 12)
    assert red[11:14, 60:200].any(axis=0).mean() > 0.9


def test_dvh_plot_legend_and_print_style() -> None:
    """The report's light plot names each curve in its colour; curves stay where the axes
    put them (a dose of 6 Gy at 50 % volume lands on the pixel the layout gives)."""
    edges = np.linspace(0, 12, 121)
    half = np.clip(100.0 * (12 - edges) / 12.0, 0, 100)   # 50 % at 6 Gy
    img = render_dvh_plot({"CTV": (edges, half), "bowel": (edges, half * 0.0)},
                          {"CTV": (230, 40, 40), "bowel": (40, 160, 40)}, size=(480, 260),
                          legend=True, style=PRINT)
    assert tuple(img[2, 2]) == PRINT.background
    axes = dvh_axes((480, 260), 12.0, legend_px=legend_width_px(["CTV", "bowel"], PRINT),
                    font_scale=PRINT.font_scale)
    x, y = axes.xy(np.array([6.0]), np.array([50.0]))[0]
    patch = img[y - 2:y + 3, x - 2:x + 3]
    assert np.all(patch == (230, 40, 40), axis=2).any()
    # legend swatches right of the plot area
    right = img[:, axes.right + 8:]
    assert np.all(right == (230, 40, 40), axis=2).sum() >= 10
    assert np.all(right == (40, 160, 40), axis=2).sum() >= 10
