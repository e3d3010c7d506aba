"""Synthetic ChArUco views shared by the calibration tests (rendered once per session)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from calibration.boards import BoardSpec, load_board
from calibration.synthetic import (
    SyntheticCamera,
    default_camera,
    random_board_poses,
    render_view,
)

N_VIEWS = 18


@dataclass
class SyntheticViews:
    """Known camera + board + poses and the rendered grey images."""

    board: BoardSpec
    camera: SyntheticCamera
    poses: np.ndarray
    images: list[np.ndarray]

    def named(self) -> list[tuple[str, np.ndarray]]:
        return [(f"view{i:02d}.png", im) for i, im in enumerate(self.images)]


@pytest.fixture(scope="session")
def synthetic_views() -> SyntheticViews:
    """18 noisy (2 grey levels), blurred (sigma 0.7 px) 1280x720 views of the default board."""
    board = load_board("charuco_7x5_30mm")
    camera = default_camera((1280, 720))
    gen = np.random.default_rng(20261123)
    poses = random_board_poses(board, camera, N_VIEWS, rng=gen)
    images = [render_view(board, camera, pose, rng=gen, noise_grey=2.0, blur_sigma_px=0.7)
              for pose in poses]
    return SyntheticViews(board, camera, poses, images)
