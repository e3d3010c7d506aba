"""Frame sources read with OpenCV: webcam, video file, folder of images."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import cv2

from guidance.frames.base import Frame, FrameSource, FrameSourceError, SkipFrame, check_image
from models.base.errors import InputError

log = logging.getLogger(__name__)

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


#: Largest camera index opened (V4L2 numbers /dev/video0..); OpenCV crashes the process
#: (segmentation fault) on an index that does not fit a C int.
MAX_CAMERA_INDEX = 1023


def check_camera_index(device: object, *, what: str = "camera") -> int:
    """A camera index as an int in ``0..MAX_CAMERA_INDEX``, or InputError naming ``what``."""
    if isinstance(device, bool) or not isinstance(device, int) \
            or not 0 <= device <= MAX_CAMERA_INDEX:
        raise InputError(f"{what} {device!r}: a camera index is a whole number from 0 to "
                         f"{MAX_CAMERA_INDEX} (/dev/video<N>)")
    return device


class WebcamSource(FrameSource):
    """A live camera through ``cv2.VideoCapture(device)``.

    Parameters
    ----------
    device : int
        Camera index (``/dev/video<device>``).
    image_size : (int, int), optional
        Requested ``(width, height)``; the camera may refuse (checked on the first frame).
    max_failures : int
        Failed grabs in a row after which the camera counts as gone
        (:class:`FrameSourceError`).

    Timestamps are ``time.monotonic()`` right after the grab.
    """

    def __init__(self, device: int = 0, *, image_size: tuple[int, int] | None = None,
                 max_failures: int = 30, camera_id: str | None = None) -> None:
        super().__init__(camera_id or f"webcam{device}")
        self.device = check_camera_index(device)
        self.image_size = image_size
        self.max_consecutive_skips = max_failures
        self._cap: cv2.VideoCapture | None = None
        self._index = 0

    def _open(self) -> None:
        cap = cv2.VideoCapture(self.device)
        if not cap.isOpened():
            cap.release()
            raise InputError(f"camera {self.device} is not present or busy; check the cable, "
                             "that no other program uses it, or choose another --camera index")
        if self.image_size is not None:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.image_size[0])
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.image_size[1])
        self._cap = cap
        self._index = 0

    def _read(self) -> Frame | None:
        ok, image = self._cap.read()
        stamp = time.monotonic()
        index = self._index
        self._index += 1
        if not ok or not check_image(image):
            raise SkipFrame(f"camera {self.device} returned no image for frame {index}")
        return Frame(image=image, timestamp_s=stamp, camera_id=self.camera_id, index=index)

    def _too_many_skips(self, skipped: int) -> Frame | None:
        raise FrameSourceError(f"camera {self.device} stopped delivering frames ({skipped} "
                               "failed grabs in a row); is it still connected?")

    def _close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class VideoFileSource(FrameSource):
    """Frames of a video file (replay); timestamps are media time (s).

    A frame that fails to decode inside the file is skipped and counted; the end of the
    file (or ``max_consecutive_skips`` bad frames in a row) ends the stream.
    """

    def __init__(self, path: str | Path, *, camera_id: str | None = None) -> None:
        self.path = Path(path)
        super().__init__(camera_id or self.path.name)
        self._cap: cv2.VideoCapture | None = None
        self._fps = 30.0
        self._count = 0
        self._index = 0

    def _open(self) -> None:
        if not self.path.is_file():
            raise InputError(f"video file {self.path} does not exist")
        cap = cv2.VideoCapture(str(self.path))
        ok = cap.isOpened()
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if ok else 0
        if not ok or count <= 0:
            cap.release()
            raise InputError(f"video file {self.path} is not a readable video (no decodable "
                             "stream); convert it to MP4 (H.264) or AVI (MJPG)")
        fps = cap.get(cv2.CAP_PROP_FPS)
        self._fps = fps if fps and fps > 0 else 30.0
        self._count = count
        self._cap = cap
        self._index = 0

    def _read(self) -> Frame | None:
        if self._index >= self._count:
            return None
        index = self._index
        self._index += 1
        ok, image = self._cap.read()
        if not ok or not check_image(image):
            if self._index >= self._count:
                return None
            raise SkipFrame(f"{self.path.name}: frame {index} does not decode")
        return Frame(image=image, timestamp_s=index / self._fps, camera_id=self.camera_id,
                     index=index)

    def _close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class ImageFolderSource(FrameSource):
    """Images of a folder in name order (``.png``, ``.jpg``, ``.bmp``, ``.tif``).

    Unreadable files are skipped and counted. Timestamps are ``index / fps``.
    """

    def __init__(self, folder: str | Path, *, fps: float = 30.0,
                 camera_id: str | None = None) -> None:
        self.folder = Path(folder)
        super().__init__(camera_id or self.folder.name)
        self._fps = float(fps)
        self._files: list[Path] = []
        self._index = 0

    def _open(self) -> None:
        if not self.folder.is_dir():
            raise InputError(f"image folder {self.folder} does not exist")
        self._files = sorted(p for p in self.folder.iterdir()
                             if p.suffix.lower() in _IMAGE_SUFFIXES)
        if not self._files:
            raise InputError(f"image folder {self.folder} holds no images "
                             f"({', '.join(_IMAGE_SUFFIXES)})")
        self._index = 0

    def _read(self) -> Frame | None:
        if self._index >= len(self._files):
            return None
        index = self._index
        self._index += 1
        path = self._files[index]
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if not check_image(image):
            raise SkipFrame(f"{path.name} is not a readable image")
        return Frame(image=image, timestamp_s=index / self._fps, camera_id=self.camera_id,
                     index=index)
