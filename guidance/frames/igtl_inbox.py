"""Video frames received over OpenIGTLink (IMAGE messages) as a frame source.

An external camera or a video grabber (PLUS, 3D Slicer, a ``pyigtl`` client) sends its
frames as OpenIGTLink ``IMAGE`` messages to our :class:`~guidance.igtl.server.IgtlServer`;
:class:`IgtlImageSource` hands the newest one to the guidance loop like any other
:class:`~guidance.frames.base.FrameSource` (newest wins: a slow reader drops frames rather
than falling behind). IMAGE pixels are RGB(A) or grey; frames come out BGR as from
``cv2.VideoCapture`` (conversion shared with :mod:`guidance.frames.igtl_client`, the client-side
source for a PLUS or Slicer *server*).
"""

from __future__ import annotations

import logging
import time

from guidance.frames.base import Frame, FrameSource, FrameSourceError, SkipFrame
from guidance.frames.igtl_client import image_from_message
from guidance.igtl.server import IgtlServer
from models.base.errors import InputError

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
        try:
            image = image_from_message(got.message.image)
        except ValueError as exc:
            raise SkipFrame(f"IMAGE {self.device_name!r}: {exc}") from exc
        return Frame(image=image, timestamp_s=got.received_s, camera_id=self.camera_id,
                     index=index)
