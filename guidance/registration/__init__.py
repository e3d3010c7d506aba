"""Registration of the patient (CT, LPS mm) to the tracked reference.

* :mod:`.paired_point` — rigid (optionally similarity) point-pair fit, FRE, residuals.
* :mod:`.tre` — predicted target registration error from FLE and fiducial geometry.
* :mod:`.surface` — point-to-plane ICP of swept points onto the CT skin/organ surface.
* :mod:`.fiducials` — collect pointer-touched fiducials and register them.
* :mod:`.decision` — accept/reject against user thresholds.
"""

from guidance.registration.paired_point import PairedPointResult, register_paired_points
from guidance.registration.tre import expected_fre_mm, predict_tre_mm

__all__ = ["PairedPointResult", "expected_fre_mm", "predict_tre_mm", "register_paired_points"]
