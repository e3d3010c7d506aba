"""``iort board``: print a ChArUco calibration board and the tool marker sheets at true size.

Pages come from :mod:`calibration.printing` at 12 px/mm; this command writes them with
Pillow, recording the resolution so a PDF page is exactly A4/Letter and a PNG carries its
DPI. Every page has a 50 mm scale bar to check the print. Tool sheets are built from
``assets/tools/*.json`` (or ``--tools DIR``); if there are none, only the board is printed.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from calibration.boards import DEFAULT_BOARD, load_board, shipped_boards
from calibration.printing import (
    PAPER_MM,
    MarkerPlate,
    Page,
    SheetMarker,
    board_page,
    marker_sheet_pages,
)
from models.base.errors import InputError

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``board`` subcommand."""
    parser = subparsers.add_parser(
        "board", help="write a printable ChArUco board and tool marker sheets (PDF/PNG)",
        description="Render the camera-calibration board and the marker sheets of the "
                    "tracked tools at true physical size, with a 50 mm scale bar to check "
                    "the printer. PDF: one page per sheet. PNG: FILE.png, FILE-2.png, ...")
    parser.add_argument("--out", type=Path, required=True, metavar="FILE",
                        help="output file, .pdf or .png")
    parser.add_argument("--board", default=DEFAULT_BOARD, metavar="NAME|FILE.json",
                        help=f"board definition (shipped: {', '.join(shipped_boards())}; "
                             f"default {DEFAULT_BOARD})")
    parser.add_argument("--paper", choices=sorted(PAPER_MM), default="a4",
                        help="paper size (default a4)")
    parser.add_argument("--what", choices=("all", "board", "markers"), default="all",
                        help="which sheets to write (default all)")
    parser.add_argument("--tools", type=Path, metavar="DIR",
                        help="directory of tool definitions (default: the shipped assets/tools)")
    parser.set_defaults(func=run)


def _tool_files(directory: Path | None) -> list[Path]:
    if directory is None:
        try:
            from assets import asset_path
            directory = asset_path("tools")
        except FileNotFoundError:
            return []
    elif not directory.is_dir():
        raise InputError(f"--tools {directory}: not a directory")
    return sorted(directory.glob("*.json"))


def tool_plates(directory: Path | None = None) -> list[MarkerPlate]:
    """Marker plates of every tool definition found (empty if none are installed)."""
    files = _tool_files(directory)
    if not files:
        return []
    from guidance.tracking.tools import load_tool

    plates = []
    for path in files:
        tool = load_tool(path)
        corners = [m.corners_mm for m in tool.markers]
        z = [float(c[:, 2].max() - c[:, 2].min()) for c in corners]
        if max(z, default=0.0) > 0.01 or len({round(float(c[0, 2]), 3) for c in corners}) > 1:
            log.warning("tool %s: markers are not all in one z = const plane; printing each "
                        "marker separately", tool.name)
            for m in tool.markers:
                plates.append(MarkerPlate(f"{tool.name} id {m.marker_id}", tool.dictionary,
                                          (SheetMarker(m.marker_id, _square(m.size_mm)),)))
            continue
        plates.append(MarkerPlate(tool.name, tool.dictionary,
                                  tuple(SheetMarker(m.marker_id, m.corners_mm[:, :2])
                                        for m in tool.markers)))
    return plates


def _square(size_mm: float) -> np.ndarray:
    half = size_mm / 2.0
    return np.array([[-half, half], [half, half], [half, -half], [-half, -half]])


def write_pages(pages: list[Page], out: Path) -> list[Path]:
    """Write pages as one PDF or numbered PNGs with their DPI; return the files written."""
    from PIL import Image

    suffix = out.suffix.lower()
    if suffix not in (".pdf", ".png"):
        raise InputError(f"--out {out}: use a .pdf or .png file name")
    out.parent.mkdir(parents=True, exist_ok=True)
    images = [Image.fromarray(p.image).convert("1", dither=Image.Dither.NONE) for p in pages]
    dpi = pages[0].dpi
    if suffix == ".pdf":
        images[0].save(out, "PDF", resolution=dpi, save_all=True, append_images=images[1:],
                       title="iort calibration board and marker sheets")
        return [out]
    written = []
    for i, image in enumerate(images):
        path = out if i == 0 else out.with_name(f"{out.stem}-{i + 1}{out.suffix}")
        image.save(path, "PNG", dpi=(dpi, dpi))
        written.append(path)
    return written


def run(args: argparse.Namespace) -> int:
    """Render the requested sheets and write them."""
    pages: list[Page] = []
    if args.what in ("all", "board"):
        pages.append(board_page(load_board(args.board), paper=args.paper))
    if args.what in ("all", "markers"):
        plates = tool_plates(args.tools)
        if plates:
            pages.extend(marker_sheet_pages(plates, paper=args.paper))
        else:
            print("no tool definitions found (assets/tools/*.json): marker sheets skipped")
    if not pages:
        raise InputError("nothing to print: no tool definitions found; use --what board")
    written = write_pages(pages, args.out)
    for page in pages:
        width, height = page.size_mm
        print(f"{page.title}: {width:.1f} x {height:.1f} mm page at {page.dpi:.1f} dpi")
    print(f"wrote {', '.join(str(p) for p in written)}")
    print("print at 100 % (no 'fit to page') and check the 50 mm scale bar with a ruler")
    return 0
