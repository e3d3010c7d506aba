"""Printable pages at true physical size: ChArUco boards and tool marker sheets.

Pages are rendered as bilevel uint8 images (0 black, 255 white) at an integer
``px_per_mm`` (default 12 px/mm = 304.8 dpi), so every length in mm is a whole number of
pixels and a PDF/PNG writer that records ``dpi`` reproduces the physical size exactly.
Every page carries a 50 mm scale bar to check the printer ("100 %", no "fit to page").
Writing the files is left to the caller (``iort board`` uses Pillow): this module needs
only numpy and OpenCV.

Marker sheets draw each tool's markers at the positions its definition gives (tool frame
x right, y up, markers in the plane z = const), inside a dashed cut outline, with a small
cross at the tool origin. Nothing else is printed inside the plate, so the white quiet zone
around each marker stays clean.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from calibration.boards import BoardSpec, get_dictionary
from calibration.errors import CalibrationError

#: Paper sizes (portrait width, height) in mm.
PAPER_MM: dict[str, tuple[float, float]] = {"a4": (210.0, 297.0), "letter": (215.9, 279.4)}

#: Default resolution: 12 px/mm (304.8 dpi) makes 1 mm a whole number of pixels.
PX_PER_MM = 12

#: Length of the printer check bar.
SCALE_BAR_MM = 50.0

MARGIN_MM = 12.0
_TEXT_MM = 3.2
_FOOTER_MM = 22.0
_PLATE_MARGIN_MM = 8.0


@dataclass(frozen=True)
class Page:
    """One printable page.

    Attributes
    ----------
    image : (H, W) uint8
        Black-and-white page, row 0 at the top.
    px_per_mm : int
        Resolution; ``dpi = 25.4 * px_per_mm``.
    title : str
        What the page holds.
    scale_bar_px : (int, int, int, int)
        ``x0, y0, x1, y1`` (pixel-edge coordinates) of the 50 mm bar.
    """

    image: np.ndarray
    px_per_mm: int
    title: str
    scale_bar_px: tuple[int, int, int, int]

    @property
    def dpi(self) -> float:
        """Dots per inch to record in the output file."""
        return 25.4 * self.px_per_mm

    @property
    def size_mm(self) -> tuple[float, float]:
        """Page ``(width, height)`` in mm."""
        height, width = self.image.shape
        return width / self.px_per_mm, height / self.px_per_mm


@dataclass(frozen=True)
class SheetMarker:
    """A marker to print: id and its four corners in the plate plane (x right, y up), mm."""

    marker_id: int
    corners_mm: np.ndarray


@dataclass(frozen=True)
class MarkerPlate:
    """The markers of one tool, printed together at their true relative positions."""

    name: str
    dictionary: str
    markers: tuple[SheetMarker, ...]


def _blank(paper: str, landscape: bool, px_per_mm: int) -> np.ndarray:
    key = paper.lower()
    if key not in PAPER_MM:
        raise CalibrationError(f"paper {paper!r} unknown; use one of {', '.join(PAPER_MM)}")
    width_mm, height_mm = PAPER_MM[key]
    if landscape:
        width_mm, height_mm = height_mm, width_mm
    return np.full((round(height_mm * px_per_mm), round(width_mm * px_per_mm)), 255, np.uint8)


def _text(page: np.ndarray, text: str, x_mm: float, y_mm: float, px_per_mm: int,
          height_mm: float = _TEXT_MM) -> None:
    """Black text with its baseline-left at (x_mm, y_mm)."""
    scale = height_mm * px_per_mm / 22.0
    thickness = max(1, round(scale * 1.6))
    cv2.putText(page, text, (round(x_mm * px_per_mm), round(y_mm * px_per_mm)),
                cv2.FONT_HERSHEY_SIMPLEX, scale, 0, thickness, cv2.LINE_8)


def _footer(page: np.ndarray, px_per_mm: int, lines: Sequence[str]) -> tuple[int, int, int, int]:
    """Draw the 50 mm scale bar and notes in the bottom margin; return the bar box."""
    height_mm = page.shape[0] / px_per_mm
    top_mm = height_mm - MARGIN_MM - _FOOTER_MM + 2.0
    x0 = round(MARGIN_MM * px_per_mm)
    y0 = round(top_mm * px_per_mm)
    x1 = x0 + round(SCALE_BAR_MM * px_per_mm)
    y1 = y0 + round(4.0 * px_per_mm)
    page[y0:y1, x0:x1] = 0
    for k in range(0, 6):  # 10 mm ticks below the bar
        tx = x0 + round(10.0 * k * px_per_mm)
        tx = min(tx, x1 - 1)
        page[y1:y1 + round(2.0 * px_per_mm), max(tx - 1, x0):tx + 1] = 0
    _text(page, "50 mm: measure after printing; print at 100 % (no 'fit to page')",
          MARGIN_MM + SCALE_BAR_MM + 5.0, top_mm + 3.5, px_per_mm, 2.8)
    for i, line in enumerate(lines):
        _text(page, line, MARGIN_MM, top_mm + 11.0 + 4.5 * i, px_per_mm, 2.8)
    return x0, y0, x1, y1


def board_page(board: BoardSpec, *, paper: str = "a4",
               px_per_mm: int = PX_PER_MM) -> Page:
    """A page with ``board`` at true size, centred, in the orientation it fits best.

    Raises
    ------
    CalibrationError
        If the board does not fit on the paper inside the margins.

    Examples
    --------
    >>> from calibration.boards import load_board
    >>> page = board_page(load_board("charuco_7x5_30mm"), px_per_mm=4)
    >>> page.size_mm
    (297.0, 210.0)
    """
    width_mm, height_mm = board.size_mm
    landscape = width_mm > height_mm
    page = _blank(paper, landscape, px_per_mm)
    page_h_mm, page_w_mm = (s / px_per_mm for s in page.shape)
    free_w = page_w_mm - 2 * MARGIN_MM
    free_h = page_h_mm - 2 * MARGIN_MM - _FOOTER_MM - 8.0
    if width_mm > free_w or height_mm > free_h:
        raise CalibrationError(
            f"board {board.name} ({width_mm:g} x {height_mm:g} mm) does not fit on "
            f"{paper} inside {MARGIN_MM:g} mm margins ({free_w:.0f} x {free_h:.0f} mm free); "
            f"use fewer or smaller squares")
    size_px = (round(width_mm * px_per_mm), round(height_mm * px_per_mm))
    image = board.cv_board.generateImage(size_px, marginSize=0, borderBits=1)
    left = round((page_w_mm - width_mm) / 2 * px_per_mm)
    top = round((MARGIN_MM + 8.0 + (free_h - height_mm) / 2) * px_per_mm)
    page[top:top + size_px[1], left:left + size_px[0]] = image
    _text(page, f"ChArUco board {board.name}: {board.describe()}", MARGIN_MM,
          MARGIN_MM + 4.0, px_per_mm)
    bar = _footer(page, px_per_mm, [
        f"Board {width_mm:g} x {height_mm:g} mm. Glue flat on a rigid plate; keep the white "
        f"border. Check one square = {board.square_mm:g} mm.",
        f"Use with: iort calibrate camera --board {board.name}"])
    return Page(np.where(page < 128, 0, 255).astype(np.uint8), px_per_mm,
                f"board {board.name}", bar)


def _plate_corners_2d(plate: MarkerPlate) -> np.ndarray:
    return np.concatenate([np.asarray(m.corners_mm, float).reshape(4, 2) for m in plate.markers])


def _draw_plate(page: np.ndarray, plate: MarkerPlate, origin_mm: tuple[float, float],
                px_per_mm: int) -> None:
    """Draw ``plate`` with its bounding box's top-left (after margin) at ``origin_mm``."""
    pts = _plate_corners_2d(plate)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    dictionary = get_dictionary(plate.dictionary, field=f"tool {plate.name}: dictionary")

    def to_px(xy: np.ndarray) -> np.ndarray:  # plate mm (y up) -> page pixel-edge coords
        x_mm = origin_mm[0] + _PLATE_MARGIN_MM + (xy[..., 0] - lo[0])
        y_mm = origin_mm[1] + _PLATE_MARGIN_MM + (hi[1] - xy[..., 1])
        return np.stack([x_mm, y_mm], axis=-1) * px_per_mm

    for marker in plate.markers:
        corners = np.asarray(marker.corners_mm, float).reshape(4, 2)
        side_mm = float(np.linalg.norm(corners[1] - corners[0]))
        side_px = round(side_mm * px_per_mm)
        image = cv2.aruco.generateImageMarker(dictionary, int(marker.marker_id), side_px, 1)
        src = np.float32([[-0.5, -0.5], [side_px - 0.5, -0.5], [-0.5, side_px - 0.5]])
        dst = (to_px(corners[[0, 1, 3]]) - 0.5).astype(np.float32)
        affine = cv2.getAffineTransform(src, dst)
        warped = cv2.warpAffine(image, affine, (page.shape[1], page.shape[0]),
                                flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                                borderValue=255)
        mask = np.zeros(page.shape, np.uint8)
        cv2.fillConvexPoly(mask, np.rint(to_px(corners) - 0.5).astype(np.int32), 1)
        page[mask > 0] = warped[mask > 0]
    # dashed cut outline and origin cross
    box_w = hi[0] - lo[0] + 2 * _PLATE_MARGIN_MM
    box_h = hi[1] - lo[1] + 2 * _PLATE_MARGIN_MM
    x0, y0 = (round(v * px_per_mm) for v in origin_mm)
    x1, y1 = x0 + round(box_w * px_per_mm), y0 + round(box_h * px_per_mm)
    dash = 3 * px_per_mm
    for x in range(x0, x1, 2 * dash):
        page[y0, x:min(x + dash, x1)] = 0
        page[y1, x:min(x + dash, x1)] = 0
    for y in range(y0, y1, 2 * dash):
        page[y:min(y + dash, y1), x0] = 0
        page[y:min(y + dash, y1), x1] = 0
    ox, oy = to_px(np.array([0.0, 0.0]))
    if x0 < ox < x1 and y0 < oy < y1:
        arm = round(1.5 * px_per_mm)
        cv2.line(page, (round(ox) - arm, round(oy)), (round(ox) + arm, round(oy)), 0, 1)
        cv2.line(page, (round(ox), round(oy) - arm), (round(ox), round(oy) + arm), 0, 1)


def plate_size_mm(plate: MarkerPlate) -> tuple[float, float]:
    """Printed ``(width, height)`` of a plate including its cut margin, mm."""
    pts = _plate_corners_2d(plate)
    span = pts.max(axis=0) - pts.min(axis=0)
    return float(span[0] + 2 * _PLATE_MARGIN_MM), float(span[1] + 2 * _PLATE_MARGIN_MM)


def marker_sheet_pages(plates: Sequence[MarkerPlate], *, paper: str = "a4",
                       px_per_mm: int = PX_PER_MM) -> list[Page]:
    """Pages holding every plate at true size (shelf packing, portrait paper).

    Raises
    ------
    CalibrationError
        If a plate is larger than the printable area.
    """
    pages: list[Page] = []
    current: np.ndarray | None = None
    names: list[str] = []
    page_h_mm = page_w_mm = 0.0
    x_mm = y_mm = shelf_h = 0.0

    def finish() -> None:
        if current is not None:
            bar = _footer(current, px_per_mm, [
                "Cut along the dashed line, glue flat on a rigid plate (no bending); "
                "the + marks the tool origin."])
            pages.append(Page(np.where(current < 128, 0, 255).astype(np.uint8), px_per_mm,
                              "markers " + ", ".join(names), bar))

    for plate in plates:
        width, height = plate_size_mm(plate)
        block_h = height + 9.0
        if current is None:
            current = _blank(paper, False, px_per_mm)
            page_h_mm, page_w_mm = (s / px_per_mm for s in current.shape)
            x_mm, y_mm, shelf_h, names = MARGIN_MM, MARGIN_MM + 8.0, 0.0, []
            _text(current, "Tool marker sheet", MARGIN_MM, MARGIN_MM + 4.0, px_per_mm)
        free_w = page_w_mm - 2 * MARGIN_MM
        free_bottom = page_h_mm - MARGIN_MM - _FOOTER_MM
        if width > free_w or block_h > free_bottom - (MARGIN_MM + 8.0):
            raise CalibrationError(f"tool {plate.name}: plate {width:.0f} x {height:.0f} mm "
                                   f"does not fit on {paper}")
        if x_mm + width > MARGIN_MM + free_w:
            x_mm, y_mm, shelf_h = MARGIN_MM, y_mm + shelf_h + 4.0, 0.0
        if y_mm + block_h > free_bottom:
            finish()
            current = _blank(paper, False, px_per_mm)
            x_mm, y_mm, shelf_h, names = MARGIN_MM, MARGIN_MM + 8.0, 0.0, []
            _text(current, "Tool marker sheet", MARGIN_MM, MARGIN_MM + 4.0, px_per_mm)
        ids = sorted(m.marker_id for m in plate.markers)
        _text(current, f"{plate.name} ({plate.dictionary}, ids {', '.join(map(str, ids))})",
              x_mm, y_mm + 4.0, px_per_mm, 2.8)
        _draw_plate(current, plate, (x_mm, y_mm + 6.0), px_per_mm)
        names.append(plate.name)
        x_mm += width + 6.0
        shelf_h = max(shelf_h, block_h)
    finish()
    return pages
