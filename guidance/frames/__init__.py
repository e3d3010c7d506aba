"""Frame sources with one life cycle (open, read, close; a context manager), after PLUS.

* :class:`~guidance.frames.base.FrameSource` — the interface; ``read()`` returns a
  :class:`~guidance.frames.base.Frame` or ``None`` at the end of the stream.
* :mod:`.opencv` — webcam and video file (``cv2.VideoCapture``), image folder.
* :mod:`.igtl_client` — OpenIGTLink IMAGE messages from a server (pyigtl client).
* :mod:`.igtl_inbox` — IMAGE messages sent to our own OpenIGTLink server.
* :mod:`guidance.sim.source` — the simulated camera as a source.
"""

from guidance.frames.base import Frame, FrameSource, FrameSourceError, ListSource
from guidance.frames.igtl_client import OpenIGTLinkSource
from guidance.frames.opencv import ImageFolderSource, VideoFileSource, WebcamSource

__all__ = ["Frame", "FrameSource", "FrameSourceError", "ImageFolderSource", "ListSource",
           "OpenIGTLinkSource", "VideoFileSource", "WebcamSource"]
