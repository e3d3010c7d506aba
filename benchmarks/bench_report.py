"""Treatment record PDF.

Keys
----
``report.pdf_s``
    Writing the PDF of a recorded session with a recomputed confirmed dose (coarse phantom,
    liac 8 MeV / 70 mm): reading the log, the dose and DVHs, layout and the file.
``report.pdf_layout_s``
    The layout and file alone (content in hand), the part every report pays.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

GROUP = "report"


def _session(folder: Path, case) -> Path:
    from guidance.record.session_log import SessionLog
    from guidance.treatment.dose_service import BeamChoice, electron_dose_function
    from models.patient.phantom import planned_patient_from_applicator

    beam = BeamChoice(energy_mev=8.0, applicator_diameter_mm=70.0)
    pose = planned_patient_from_applicator(case)
    electron_dose_function("liac")(case, pose, beam)   # kernels warm
    path = folder / "session.sqlite"
    with SessionLog.create(path, case_id="BENCH") as slog:
        slog.log_registration(method="paired_point", fre_mm=0.4, accepted=True,
                              patient_from_reference=np.eye(4), tre_predicted_mm=0.6)
        slog.log_confirmed_pose(patient_from_applicator=pose,
                                beam={**asdict(beam), "machine": "liac"},
                                coverage={"CTV": {"v90_percent": 99.0}})
    return path


def run(*, quick: bool = False) -> dict[str, float]:
    from guidance.cli.commands.report import _dvh_function
    from guidance.record.session_report import content_from_session
    from guidance.record.treatment_report import write_pdf
    from models.patient.phantom import make_phantom

    case = make_phantom(spacing_mm=(3.0, 3.0, 4.0))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = _session(folder, case)
        start = time.perf_counter()
        content = content_from_session(path, dvh_fn=_dvh_function(case, "liac"))
        write_pdf(content, folder / "record.pdf")
        total = time.perf_counter() - start
        start = time.perf_counter()
        write_pdf(content, folder / "again.pdf")
        layout = time.perf_counter() - start
    return {"report.pdf_s": total, "report.pdf_layout_s": layout}
