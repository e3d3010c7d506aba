"""Screenshots of the views at a confirm, kept beside the session log for the record.

:func:`save_confirm_screenshots` writes each view (an RGB array) as PNG into the log's own
folder ``<log>.shots/`` (owner-only: the images show the patient's anatomy and name) and
records their names in a ``screenshots`` action; :func:`confirm_screenshots` finds them
again for the treatment record (``iort report``). Paths in the log are relative to the
log's folder, so a session folder can be moved as a whole.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from guidance.record.session_log import SessionEvent, SessionLog
from models.base.errors import InputError
from models.base.files import make_private_folders, write_private_bytes

#: Suffix of the folder beside ``session-....sqlite`` that holds its screenshots.
SHOTS_SUFFIX = ".shots"
_NAME = re.compile(r"^[a-z0-9_]{1,32}$")


def shots_folder(log_path: Path) -> Path:
    """The folder of a session log's screenshots."""
    return log_path.with_name(log_path.name + SHOTS_SUFFIX)


def save_confirm_screenshots(session_log: SessionLog, confirmed_seq: int,
                             images: Mapping[str, np.ndarray]) -> list[Path]:
    """Write ``images`` (view name -> (H, W, 3) uint8 RGB) for the confirm event
    ``confirmed_seq``; returns the files written (``confirm_<seq>_<view>.png``)."""
    import cv2

    folder = make_private_folders(shots_folder(session_log.path))
    written: list[Path] = []
    for view, image in images.items():
        if not _NAME.match(view):
            raise InputError(f"screenshot view name {view!r}: use 1-32 of a-z, 0-9, _")
        rgb = np.asarray(image)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8 or not rgb.size:
            raise InputError(f"screenshot {view!r}: expected an (H, W, 3) uint8 RGB image, "
                             f"got {rgb.dtype} {rgb.shape}")
        path = folder / f"confirm_{int(confirmed_seq)}_{view}.png"
        ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        if not ok:
            raise InputError(f"screenshot {view!r} could not be encoded as PNG")
        written.append(write_private_bytes(path, data.tobytes()))
    session_log.log_action("screenshots", confirmed_seq=int(confirmed_seq),
                           files=[str(p.relative_to(session_log.path.parent))
                                  for p in written])
    return written


def confirm_screenshots(log_path: Path, events: Iterable[SessionEvent]) -> list[Path]:
    """The screenshots a log records that still exist (inside the log's folder only)."""
    root = log_path.parent.resolve()
    out: list[Path] = []
    for event in events:
        if event.kind != "action" or event.payload.get("action") != "screenshots":
            continue
        for name in event.payload.get("files") or []:
            path = (root / str(name)).resolve()
            if path.is_relative_to(root) and path.is_file():
                out.append(path)
    return out
