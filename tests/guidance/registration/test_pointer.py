"""The simulated-procedure registration is judged like the guided one (one workflow)."""

from __future__ import annotations

import numpy as np

from guidance.record.session_log import SessionLog
from guidance.registration.pointer import PointerRegistration
from guidance.registration.workflow import RegistrationConcluded
from tests.guidance.registration.test_guided import (
    FIDS,
    TARGET,
    TRUTH,
    FakeLoop,
    frame_result,
    tip_of,
)


def _run(offsets: dict[str, tuple[float, float, float]], tmp_path):
    names = list(FIDS)
    order = [n for n in names for _ in range(2)]     # two frames per fiducial
    loop = FakeLoop()
    slog = SessionLog.create(tmp_path / "s.sqlite")
    reg = PointerRegistration(loop, FIDS, lambda i: order[i] if i < len(order) else None,
                              target_lps=TARGET, samples_per_fiducial=2, session_log=slog)
    heard: list[RegistrationConcluded] = []
    reg.on_concluded.append(heard.append)
    for index, name in enumerate(order):
        reg(frame_result(tip_of(name, offsets.get(name, (0.0, 0.0, 0.0))), index))
    return loop, reg, heard, slog


def test_a_good_fit_is_accepted_and_handed_to_the_loop(tmp_path) -> None:
    loop, reg, heard, slog = _run({}, tmp_path)
    assert reg.result is not None and loop.calls == 1
    np.testing.assert_allclose(loop.patient_from_reference, TRUTH, atol=1e-6)
    assert len(heard) == 1 and heard[0].accepted and heard[0].reasons == ()
    assert slog.last("registration").payload["accepted"] is True
    slog.close()


def test_a_mistouched_fiducial_is_refused_and_never_reaches_the_loop(tmp_path) -> None:
    # FID3 touched 12 mm off: the simulated path used to accept any fit
    loop, reg, heard, slog = _run({"FID3": (12.0, 0.0, 0.0)}, tmp_path)
    assert reg.result is None and loop.calls == 0 and loop.patient_from_reference is None
    assert len(heard) == 1 and not heard[0].accepted
    assert any("FID3" in r for r in heard[0].reasons), heard[0].reasons
    assert slog.last("registration").payload["accepted"] is False
    assert "registration refused" in slog.last("warning").payload["message"]
    slog.close()
