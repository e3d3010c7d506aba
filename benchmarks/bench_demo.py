"""Benchmark of ``iort demo``: whole-run wall time and loop frame rate on the phantom.

Keys: ``demo.frames_per_s`` (frames through tracking, registration, dose and overlay per
second of the loop, rendering of the simulated camera included) and ``demo.wall_s`` (the
whole run: phantom DICOM written and imported, dose kernel warmed, loop, outputs).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

GROUP = "demo"


def run(*, quick: bool = False) -> dict[str, float]:
    """Run the headless demo once (30 frames; 10 on a coarse phantom with ``quick``)."""
    from guidance.app.demo import DemoOptions, run_demo

    with tempfile.TemporaryDirectory(prefix="iort-bench-demo-") as tmp:
        options = DemoOptions(out_dir=Path(tmp), frames=10 if quick else 30,
                              spacing_mm=(3.0, 3.0, 4.0) if quick else (1.5, 1.5, 2.5),
                              video=not quick, progress=False)
        summary = run_demo(options).summary
    return {"demo.frames_per_s": float(summary["timing.fps"]),
            "demo.wall_s": float(summary["timing.wall_s"]),
            "demo.tre_mm": float(summary["registration.tre_mm"] or float("nan")),
            "demo.overlay_target_error_px": float(summary["overlay.target_error_px"]
                                                  or float("nan"))}
