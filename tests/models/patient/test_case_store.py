"""Case folder: exact round trip, checksums, refusal to overwrite, foreign folders."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from models.base.errors import InputError
from models.patient.case_store import load_case, save_case
from models.patient.phantom import make_phantom
from models.patient.volume import Volume


@pytest.fixture(scope="module")
def case():
    c = make_phantom(spacing_mm=(3.0, 3.0, 4.0), seed=2)
    c.study_instance_uid, c.series_instance_uid, c.frame_of_reference_uid = "1.2", "1.3", "1.4"
    c.image_instance_uids = [f"1.5.{k}" for k in range(c.ct.shape[0])]
    c.dose = Volume.from_grid(np.arange(60, dtype=np.float32).reshape(3, 4, 5),
                              spacing_mm=(2.0, 2.0, 2.0), origin_mm=(1.0, 2.0, 3.0))
    c.plan = {"energy_mev": 9.0, "applicator_mm": 60}
    return c


def test_round_trip_is_exact(case, tmp_path: Path) -> None:
    save_case(case, tmp_path / "c")
    back = load_case(tmp_path / "c")
    np.testing.assert_array_equal(back.ct.array, case.ct.array)
    np.testing.assert_array_equal(back.ct.patient_from_voxel, case.ct.patient_from_voxel)
    assert list(back.structures) == list(case.structures)
    for name, structure in case.structures.items():
        np.testing.assert_array_equal(back.structures[name].mask, structure.mask)
        assert back.structures[name].color_rgb == structure.color_rgb
        assert back.structures[name].roi_type == structure.roi_type
    for name, point in case.fiducials_lps.items():
        np.testing.assert_array_equal(back.fiducials_lps[name], point)
    assert back.image_instance_uids == case.image_instance_uids
    assert (back.study_instance_uid, back.frame_of_reference_uid) == ("1.2", "1.4")
    np.testing.assert_array_equal(back.dose.array, case.dose.array)
    np.testing.assert_array_equal(back.dose.patient_from_voxel, case.dose.patient_from_voxel)
    assert back.plan == case.plan


def test_load_is_fast(case, tmp_path: Path) -> None:
    save_case(case, tmp_path / "c")
    start = time.perf_counter()
    load_case(tmp_path / "c")
    assert time.perf_counter() - start < 1.0


def test_damaged_file_detected(case, tmp_path: Path) -> None:
    save_case(case, tmp_path / "c")
    data = bytearray((tmp_path / "c" / "ct.npy").read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / "c" / "ct.npy").write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"ct\.npy: checksum mismatch"):
        load_case(tmp_path / "c")
    load_case(tmp_path / "c", verify=False)


def test_missing_file_and_foreign_folder(case, tmp_path: Path) -> None:
    save_case(case, tmp_path / "c")
    (tmp_path / "c" / "masks.npz").unlink()
    with pytest.raises(InputError, match=r"masks\.npz: missing file"):
        load_case(tmp_path / "c")
    with pytest.raises(InputError, match="not a case folder"):
        load_case(tmp_path)
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "manifest.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(InputError, match="not an iort-case manifest"):
        load_case(tmp_path / "x")


def test_overwrite_needs_force(case, tmp_path: Path) -> None:
    save_case(case, tmp_path / "c")
    with pytest.raises(InputError, match="not empty"):
        save_case(case, tmp_path / "c")
    case_no_dose = make_phantom(spacing_mm=(4.0, 4.0, 5.0))
    save_case(case_no_dose, tmp_path / "c", force=True)
    back = load_case(tmp_path / "c")
    assert back.dose is None and back.ct.shape == case_no_dose.ct.shape
