"""Frames from OpenIGTLink IMAGE messages (a PLUS server, 3D Slicer, a video streamer).

Connects as a client (``pyigtl.OpenIGTLinkClient``) and returns each IMAGE of one device
as a frame. 2-D images arrive as (1, H, W) grey or (1, H, W, 3) RGB (OpenIGTLink's
component order) and are returned as OpenCV BGR. The sender's timestamp is used when it
has one.
"""

from __future__ import annotations

import logging
import time

import cv2
import numpy as np

from guidance.frames.base import Frame, FrameSource, FrameSourceError, SkipFrame
from models.base.errors import InputError

log = logging.getLogger(__name__)


def image_from_message(pixels: np.ndarray) -> np.ndarray:
    """OpenCV image (H, W) grey or (H, W, 3) BGR uint8 from an IMAGE message's array.

    Raises
    ------
    ValueError
        For volumes (more than one slice), unsupported component counts or dtypes.
    """
    arr = np.asarray(pixels)
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    elif arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise InputError(f"IMAGE of shape {np.shape(pixels)} is not a 2-D grey/RGB(A) frame")
    if arr.dtype != np.uint8:
        if not np.issubdtype(arr.dtype, np.number):
            raise InputError(f"IMAGE dtype {arr.dtype} is not numeric")
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    if arr.ndim == 3:
        code = cv2.COLOR_RGB2BGR if arr.shape[2] == 3 else cv2.COLOR_RGBA2BGR
        arr = cv2.cvtColor(np.ascontiguousarray(arr), code)
    return np.ascontiguousarray(arr)


class OpenIGTLinkSource(FrameSource):
    """IMAGE messages of one device from an OpenIGTLink server.

    Parameters
    ----------
    host, port : str, int
        The server (PLUS default 18944).
    device_name : str
        IMAGE device to follow (e.g. ``"Video"``).
    connect_timeout_s : float
        How long :meth:`open` waits for the connection.
    frame_timeout_s : float
        How long a read waits for the next IMAGE before counting a skipped frame; after
        ``max_consecutive_skips`` the source fails (:class:`FrameSourceError`).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 18944, *,
                 device_name: str = "Video", connect_timeout_s: float = 3.0,
                 frame_timeout_s: float = 1.0, max_missing_frames: int = 5,
                 camera_id: str | None = None) -> None:
        super().__init__(camera_id or f"igtl:{device_name}")
        self.host = host
        self.port = int(port)
        self.device_name = device_name
        self.connect_timeout_s = float(connect_timeout_s)
        self.frame_timeout_s = float(frame_timeout_s)
        self.max_consecutive_skips = int(max_missing_frames)
        self._client = None
        self._index = 0

    def _open(self) -> None:
        import pyigtl

        client = pyigtl.OpenIGTLinkClient(host=self.host, port=self.port, start_now=True)
        deadline = time.monotonic() + self.connect_timeout_s
        while not client.is_connected() and time.monotonic() < deadline:
            time.sleep(0.02)
        if not client.is_connected():
            client.stop()
            raise InputError(f"no OpenIGTLink server at {self.host}:{self.port} (waited "
                             f"{self.connect_timeout_s:g} s); start the video server or check "
                             "host/port")
        self._client = client
        self._index = 0

    def _read(self) -> Frame | None:
        message = self._client.wait_for_message(self.device_name,
                                                timeout=self.frame_timeout_s)
        index = self._index
        self._index += 1
        if message is None:
            if not self._client.is_connected():
                raise FrameSourceError(f"OpenIGTLink server {self.host}:{self.port} "
                                       "disconnected")
            raise SkipFrame(f"no IMAGE from {self.device_name!r} within "
                            f"{self.frame_timeout_s:g} s")
        if getattr(message, "message_type", "IMAGE") != "IMAGE":
            raise SkipFrame(f"{self.device_name!r} sent {message.message_type}, not IMAGE")
        try:
            image = image_from_message(message.image)
        except ValueError as exc:
            raise SkipFrame(str(exc)) from exc
        stamp = float(getattr(message, "timestamp", 0.0) or 0.0) or time.monotonic()
        return Frame(image=image, timestamp_s=stamp, camera_id=self.camera_id, index=index)

    def _too_many_skips(self, skipped: int) -> Frame | None:
        raise FrameSourceError(f"no frames from OpenIGTLink device {self.device_name!r} at "
                               f"{self.host}:{self.port} ({skipped} waits in a row)")

    def _close(self) -> None:
        if self._client is not None:
            self._client.stop()
            self._client = None
