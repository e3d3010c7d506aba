"""``iort board``: PDF/PNG written at true physical size with a 50 mm bar."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from guidance.cli.main import main

PT_PER_MM = 72.0 / 25.4


def pdf_pages(path) -> list[tuple[list[float], int, int]]:
    """(MediaBox, image width px, image height px) of each page of a Pillow-written PDF."""
    data = path.read_bytes()
    boxes = [[float(v) for v in m.split()] for m in
             re.findall(rb"/MediaBox\s*\[([^\]]*)\]", data)]
    widths = [int(v) for v in re.findall(rb"/Width (\d+)", data)]
    heights = [int(v) for v in re.findall(rb"/Height (\d+)", data)]
    return list(zip(boxes, widths, heights, strict=True))


def test_pdf_pages_are_a4_at_true_scale(tmp_path, capsys):
    out = tmp_path / "board.pdf"
    assert main(["board", "--out", str(out)]) == 0
    pages = pdf_pages(out)
    assert len(pages) == 3  # board + two sheets for the four shipped tools (at true size)
    (box, width_px, height_px) = pages[0]
    assert box[2] / PT_PER_MM == pytest.approx(297.0, abs=0.01)  # landscape board page
    assert box[3] / PT_PER_MM == pytest.approx(210.0, abs=0.01)
    mm_per_px = box[2] / PT_PER_MM / width_px
    assert box[3] / PT_PER_MM / height_px == pytest.approx(mm_per_px, rel=1e-9)
    # The bar is drawn 600 px long at 12 px/mm: 50 mm on paper.
    assert 600 * mm_per_px == pytest.approx(50.0, abs=0.01)
    assert "check the 50 mm scale bar" in capsys.readouterr().out


def test_png_records_dpi_and_bar_measures_50_mm(tmp_path):
    out = tmp_path / "board.png"
    assert main(["board", "--out", str(out), "--paper", "letter", "--what", "board"]) == 0
    image = Image.open(out)
    dpi = image.info["dpi"][0]
    pixels = np.asarray(image.convert("L"))
    px_per_mm = dpi / 25.4
    assert pixels.shape[1] / px_per_mm == pytest.approx(279.4, abs=0.1)
    # Find the bar: the longest horizontal black run in the bottom 40 mm of the page.
    band = pixels[-round(40 * px_per_mm):] < 128
    runs = []
    for row in band:
        edges = np.flatnonzero(np.diff(np.concatenate([[0], row.astype(np.int8), [0]])))
        if edges.size:
            runs.append(int((edges[1::2] - edges[::2]).max()))
    assert max(runs) / px_per_mm == pytest.approx(50.0, abs=0.1)
    assert not (tmp_path / "board-2.png").exists()


def test_missing_tool_definitions_are_skipped(tmp_path, capsys):
    empty = tmp_path / "tools"
    empty.mkdir()
    out = tmp_path / "b.pdf"
    assert main(["board", "--out", str(out), "--tools", str(empty)]) == 0
    assert len(pdf_pages(out)) == 1
    assert "marker sheets skipped" in capsys.readouterr().out
    assert main(["board", "--out", str(out), "--tools", str(empty), "--what", "markers"]) == 2
    assert "nothing to print" in capsys.readouterr().err


def test_bad_arguments_give_one_line(tmp_path, capsys):
    assert main(["board", "--out", str(tmp_path / "b.svg")]) == 2
    assert "use a .pdf or .png" in capsys.readouterr().err
    assert main(["board", "--out", str(tmp_path / "b.pdf"), "--board", "nope"]) == 2
    assert "neither a .json file nor a shipped board" in capsys.readouterr().err
