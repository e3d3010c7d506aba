"""Video frames received over OpenIGTLink (IMAGE messages) as a frame source.

An external camera or a video grabber (PLUS, 3D Slicer, a ``pyigtl`` client) sends its
frames as OpenIGTLink ``IMAGE`` messages to our :class:`~guidance.igtl_server.IgtlServer`;
:class:`IgtlImageSource` hands the newest one to the guidance loop like any other
:class:`~guidance.sources.base.FrameSource` (newest wins: a slow reader drops frames rather
than falling behind). IMAGE pixels are RGB(A) or grey; frames come out BGR as from
``cv2.VideoCapture``.
"""

from __future__ import annotations

import logging
import time

import cv2
import numpy as np

from guidance.igtl_server import IgtlServer
from guidance.sources.base import Frame, FrameSource, FrameSourceError, SkipFrame
from models.errors import InputError

log = logging.getLogger(__name__)


class IgtlImageSource(FrameSource):
    """Frames from OpenIGTLink IMAGE messages of one device.

    Parameters
    ----------
    server : IgtlServer
        A started server the camera sends to.
    device_name : str
        IMAGE device name to take (e.g. ``"Video"``).
    first_frame_timeout_s : float
        How long :meth:`open` waits for the first frame (InputError after).
    max_gap_s : float
        A live stream silent this long counts as gone (:class:`FrameSourceError`).
    poll_s : float
        Longest single wait.

    Timestamps are ``time.monotonic()`` at arrival (a live camera's clock).
    """

    def __init__(self, server: IgtlServer, device_name: str = "Video", *,
                 first_frame_timeout_s: float = 30.0, max_gap_s: float = 5.0,
                 poll_s: float = 0.05) -> None:
        super().__init__(f"igtl:{device_name}")
        self.server = server
        self.device_name = device_name
        self.first_frame_timeout_s = float(first_frame_timeout_s)
        self.max_gap_s = float(max_gap_s)
        self.poll_s = float(poll_s)
        self._last_received = -1.0
        self._index = 0

    def _open(self) -> None:
        if self.server.wait_for("IMAGE", self.device_name,
                                timeout_s=self.first_frame_timeout_s) is None:
            raise InputError(f"OpenIGTLink: no IMAGE {self.device_name!r} arrived on port "
                             f"{self.server.port} within {self.first_frame_timeout_s:g} s; "
                             "start the camera's OpenIGTLink sender or check its device name")

    def _read(self) -> Frame | None:
        deadline = time.monotonic() + self.max_gap_s
        while True:
            got = self.server.wait_for("IMAGE", self.device_name, timeout_s=self.poll_s,
                                       newer_than_s=self._last_received)
            if got is not None:
                break
            if time.monotonic() > deadline:
                raise FrameSourceError(f"OpenIGTLink IMAGE {self.device_name!r}: nothing for "
                                       f"{self.max_gap_s:g} s (sender gone?)")
        self._last_received = got.received_s
        index = self._index
        self._index += 1
        image = image_to_bgr(got.message.image)
        if image is None:
            raise SkipFrame(f"IMAGE {self.device_name!r} is not an 8-bit 2-D grey/RGB/RGBA "
                            f"frame (shape {np.shape(got.message.image)}, "
                            f"{np.asarray(got.message.image).dtype})")
        return Frame(image=image, timestamp_s=got.received_s, camera_id=self.camera_id,
                     index=index)


def image_to_bgr(image: np.ndarray) -> np.ndarray | None:
    """pyigtl IMAGE array ((k, j, i) or (k, j, i, c), one slice) to a BGR/grey uint8 frame."""
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        return None
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    elif arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        return np.ascontiguousarray(arr)
    if arr.ndim == 3 and arr.shape[2] == 3:
        return cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    if arr.ndim == 3 and arr.shape[2] == 4:
        return cv2.cvtColor(arr, cv2.COLOR_RGBA2BGR)
    return None
