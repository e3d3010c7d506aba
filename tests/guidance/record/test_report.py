"""The HTML report: its DVH is the monitor's plot, decodable and in the structures' colours."""

from __future__ import annotations

import base64
import re

import cv2
import numpy as np

from guidance.record.report import write_report
from models.evaluation.dvh import compute_dvh
from models.patient.volume import Volume


def test_report_embeds_the_shared_dvh_plot(tmp_path) -> None:
    dose = Volume.from_grid(np.linspace(0.0, 12.0, 20 * 20 * 20, dtype=np.float32)
                            .reshape(20, 20, 20), spacing_mm=(2.0, 2.0, 2.0))
    mask = np.zeros((20, 20, 20), bool)
    mask[5:15, 5:15, 5:15] = True
    dvhs = {"CTV": compute_dvh(dose, dose.with_array(mask), name="CTV", prescription_gy=10.0)}
    path = write_report(tmp_path / "report.html", summary={"beam.prescription_gy": 10.0},
                        dvhs=dvhs, images=[], colors={"CTV": (10, 200, 30)})
    html = path.read_text()
    match = re.search(r'src="data:image/png;base64,([^"]+)"', html)
    assert match, "no embedded DVH plot"
    png = np.frombuffer(base64.b64decode(match.group(1)), np.uint8)
    rgb = cv2.cvtColor(cv2.imdecode(png, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert rgb.shape[0] > 100 and tuple(rgb[1, 1]) == (255, 255, 255)   # print style
    assert np.all(rgb == (10, 200, 30), axis=2).sum() > 100   # the CTV curve + legend
    assert "CTV" in html and "10.0" in html
