"""Frame sources with one life cycle (open, read, close; a context manager), after PLUS.

* :class:`~guidance.sources.base.FrameSource` — the interface; ``read()`` returns a
  :class:`~guidance.sources.base.Frame` or ``None`` at the end of the stream.
* :mod:`.opencv` — webcam and video file (``cv2.VideoCapture``), image folder.
* :mod:`.igtl` — OpenIGTLink IMAGE messages (pyigtl client).
* :mod:`.simulated` — the simulated camera (:mod:`guidance.simcamera`) as a source.
"""

from guidance.sources.base import Frame, FrameSource, FrameSourceError, ListSource
from guidance.sources.igtl import OpenIGTLinkSource
from guidance.sources.opencv import ImageFolderSource, VideoFileSource, WebcamSource

__all__ = ["Frame", "FrameSource", "FrameSourceError", "ImageFolderSource", "ListSource",
           "OpenIGTLinkSource", "VideoFileSource", "WebcamSource"]
