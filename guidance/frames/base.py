"""The frame-source interface: every device and replay has the same life cycle.

Like PLUS devices (connect, start, grab, stop, disconnect) a source is opened, read frame
by frame and closed, and is a context manager. Every frame carries its timestamp and frame
number. A frame that cannot be decoded is skipped and counted (``frames_skipped``), never
raised to the caller; a source that cannot be opened raises :class:`InputError` naming it;
a live source that stops delivering raises :class:`FrameSourceError`.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.base.errors import IortError

log = logging.getLogger(__name__)


class FrameSourceError(IortError):
    """A source that was open stopped delivering frames (camera unplugged, peer gone)."""


@dataclass(frozen=True)
class Frame:
    """One video frame.

    Attributes
    ----------
    image : (H, W, 3) uint8 array (BGR, as OpenCV) or (H, W) uint8 grey
    timestamp_s : float
        Acquisition time on the source's clock (s): monotonic for live cameras, media time
        for files, the simulation clock for the simulated camera. Staleness is measured on
        this clock, so replays behave like the live run.
    camera_id : str
        Which camera.
    index : int
        Frame number within the stream (0-based, counting skipped frames too).
    truth : object, optional
        Ground truth attached by the simulated camera (:class:`guidance.sim.camera.SimTruth`).
    """

    image: np.ndarray
    timestamp_s: float
    camera_id: str
    index: int
    truth: Any = None


def check_image(image: Any) -> bool:
    """True if ``image`` is a usable (H, W) or (H, W, 3) uint8 frame."""
    return (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.size > 0
            and (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4))))


class FrameSource(ABC):
    """Base of every frame source.

    Subclasses implement :meth:`_open`, :meth:`_read` and :meth:`_close`; ``_read`` returns
    a Frame, ``None`` at the end of the stream, or raises :class:`_SkipFrame` for a corrupt
    frame (counted and skipped here).
    """

    def __init__(self, camera_id: str) -> None:
        self.camera_id = camera_id
        self.frames_read = 0
        self.frames_skipped = 0
        self._open_flag = False
        self.max_consecutive_skips = 50

    @property
    def is_open(self) -> bool:
        """Whether :meth:`open` succeeded and :meth:`close` has not been called."""
        return self._open_flag

    def open(self) -> None:
        """Connect to the device or file; raises InputError if it is not there."""
        if not self._open_flag:
            self._open()
            self._open_flag = True

    def read(self) -> Frame | None:
        """The next frame, or None at the end of the stream.

        Corrupt frames are skipped and counted; after ``max_consecutive_skips`` in a row the
        stream is treated as ended (files) or failed (:class:`FrameSourceError`, live).
        """
        if not self._open_flag:
            raise RuntimeError(f"frame source {self.camera_id!r} is not open; call open() or "
                               "use it as a context manager")
        skipped = 0
        while True:
            try:
                frame = self._read()
            except SkipFrame as skip:
                self.frames_skipped += 1
                skipped += 1
                log.warning("%s: skipped frame (%s); %d skipped so far", self.camera_id, skip,
                            self.frames_skipped)
                if skipped >= self.max_consecutive_skips:
                    return self._too_many_skips(skipped)
                continue
            if frame is not None:
                self.frames_read += 1
            return frame

    def _too_many_skips(self, skipped: int) -> Frame | None:
        log.warning("%s: %d unreadable frames in a row; ending the stream", self.camera_id,
                    skipped)
        return None

    def close(self) -> None:
        """Release the device or file (safe to call twice)."""
        if self._open_flag:
            self._open_flag = False
            self._close()

    def __enter__(self) -> FrameSource:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Frame]:
        while (frame := self.read()) is not None:
            yield frame

    @abstractmethod
    def _open(self) -> None: ...

    @abstractmethod
    def _read(self) -> Frame | None: ...

    def _close(self) -> None:  # noqa: B027 - optional hook, most sources have nothing to free
        """Free resources (override when needed)."""


class SkipFrame(Exception):
    """Raised by a source's ``_read`` for a frame that cannot be decoded."""


class ListSource(FrameSource):
    """Frames from a list of images (tests, replays held in memory).

    Parameters
    ----------
    images : iterable of arrays
        Frames; invalid entries (None, wrong dtype/shape) are skipped and counted like a
        corrupt frame of a video.
    fps : float
        Timestamps are ``index / fps``.
    """

    def __init__(self, images: Iterable[Any], *, fps: float = 30.0,
                 camera_id: str = "list") -> None:
        super().__init__(camera_id)
        self._images = list(images)
        self._fps = float(fps)
        self._next = 0

    def _open(self) -> None:
        self._next = 0

    def _read(self) -> Frame | None:
        if self._next >= len(self._images):
            return None
        index = self._next
        self._next += 1
        image = self._images[index]
        if not check_image(image):
            raise SkipFrame(f"frame {index} is not a uint8 image")
        return Frame(image=image, timestamp_s=index / self._fps, camera_id=self.camera_id,
                     index=index)
