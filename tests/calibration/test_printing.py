"""Printable pages: true physical size, detectable boards and marker plates."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from calibration.boards import board_from_values, load_board
from calibration.charuco import detect_charuco
from calibration.errors import CalibrationError
from calibration.printing import (
    PAPER_MM,
    MarkerPlate,
    SheetMarker,
    board_page,
    marker_sheet_pages,
)


def longest_black_run_px(image: np.ndarray) -> int:
    """Length of the longest horizontal run of black pixels anywhere in the image."""
    best = 0
    for row in image < 128:
        padded = np.concatenate([[0], row.astype(np.int8), [0]])
        edges = np.flatnonzero(np.diff(padded))
        if edges.size:
            best = max(best, int((edges[1::2] - edges[::2]).max()))
    return best


@pytest.mark.parametrize("paper", ["a4", "letter"])
def test_board_page_has_true_size_and_a_50_mm_bar(paper):
    board = load_board("charuco_7x5_30mm")
    page = board_page(board, paper=paper, px_per_mm=8)
    width, height = PAPER_MM[paper]
    assert page.size_mm == pytest.approx((height, width), abs=1 / 8)  # landscape
    x0, y0, x1, y1 = page.scale_bar_px
    footer = page.image[y0 - 5:y1 + 2]
    # Measured from the pixels, not from the stored box: the bar is the longest black run
    # in the footer band.
    assert longest_black_run_px(footer) / page.px_per_mm == pytest.approx(50.0, abs=0.13)
    assert (x1 - x0) / page.px_per_mm == 50.0
    assert set(np.unique(page.image)) <= {0, 255}


def test_printed_board_is_detected_with_true_square_size():
    board = load_board("charuco_7x5_30mm")
    page = board_page(board, px_per_mm=6)
    det = detect_charuco(page.image, board)
    assert det.n_corners == board.n_corners
    order = np.argsort(det.ids)
    corners_mm = det.corners_px[order] / page.px_per_mm
    along_x = np.linalg.norm(np.diff(corners_mm.reshape(4, 6, 2), axis=1), axis=-1)
    np.testing.assert_allclose(along_x, board.square_mm, atol=0.1)


def test_board_too_large_for_the_paper():
    big = board_from_values("12x9", 30, 22, "DICT_5X5_100")
    with pytest.raises(CalibrationError, match="does not fit on a4"):
        board_page(big, px_per_mm=2)


def _plate(name: str, ids: list[int], size_mm: float, gap_mm: float) -> MarkerPlate:
    markers = []
    for k, marker_id in enumerate(ids):
        col, row = k % 2, k // 2
        x0 = -size_mm - gap_mm / 2 + col * (size_mm + gap_mm)
        y0 = size_mm + gap_mm / 2 - row * (size_mm + gap_mm)
        corners = np.array([[x0, y0], [x0 + size_mm, y0], [x0 + size_mm, y0 - size_mm],
                            [x0, y0 - size_mm]])
        markers.append(SheetMarker(marker_id, corners))
    return MarkerPlate(name, "DICT_4X4_50", tuple(markers))


def test_marker_sheet_reproduces_the_tool_layout():
    plates = [_plate("reference", [0, 1, 2, 3], 40.0, 10.0), _plate("pointer", [4, 5, 6, 7],
                                                                     30.0, 8.0)]
    pages = marker_sheet_pages(plates, px_per_mm=6)
    assert len(pages) == 1
    page = pages[0]
    detector = cv2.aruco.ArucoDetector(
        cv2.aruco.getPredefinedDictionary(cv2.aruco.DICT_4X4_50))
    corners, ids, _ = detector.detectMarkers(page.image)
    found = {int(i): c.reshape(4, 2) for i, c in zip(np.ravel(ids), corners, strict=True)}
    assert set(found) == set(range(8))
    for plate in plates:
        # Page pixels -> mm with y up; must equal the definition up to a translation.
        measured = np.concatenate([(found[m.marker_id] + 0.5) / page.px_per_mm * [1, -1]
                                   for m in plate.markers])
        defined = np.concatenate([m.corners_mm for m in plate.markers])
        offset = (measured - defined).mean(axis=0)
        np.testing.assert_allclose(measured - offset, defined, atol=0.25)


def test_many_plates_flow_onto_more_pages():
    plates = [_plate(f"tool{i}", [4 * i, 4 * i + 1, 4 * i + 2, 4 * i + 3], 40.0, 10.0)
              for i in range(6)]
    pages = marker_sheet_pages(plates, px_per_mm=2)
    assert len(pages) >= 2
    assert all(p.size_mm == pytest.approx((210.0, 297.0), abs=0.5) for p in pages)
