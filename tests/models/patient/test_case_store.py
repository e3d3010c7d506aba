"""Case folder: exact round trip, checksums, refusal to overwrite, foreign folders."""

from __future__ import annotations

import json
import os
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


# --- the sealed manifest: editing the case after saving is detected ----------------------

def _edit_manifest(folder: Path, change, *, reseal: bool = False) -> None:
    from models.patient.case_store import DIGEST_KEY, manifest_digest

    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    if reseal:
        manifest[DIGEST_KEY] = manifest_digest(manifest)
    path.write_text(json.dumps(manifest, indent=1))


def _shift_origin(m):
    m["ct"]["patient_from_voxel"][0][3] += 10.0


def _double_spacing(m):
    for row in m["ct"]["patient_from_voxel"][:3]:
        row[0] *= 2.0


def _move_fiducial(m):
    name = sorted(m["fiducials_lps"])[0]
    m["fiducials_lps"][name][2] += 20.0


def _swap_masks(m):
    a, b = m["structures"][0], m["structures"][1]
    a["key"], b["key"] = b["key"], a["key"]


def _set(*keys, value):
    def change(m):
        node = m
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value
    return change


def _drop(*keys):
    def change(m):
        node = m
        for key in keys[:-1]:
            node = node[key]
        del node[keys[-1]]
    return change


TAMPERING = {
    "CT origin +10 mm": _shift_origin,
    "CT spacing x2": _double_spacing,
    "fiducial moved 20 mm": _move_fiducial,
    "masks swapped": _swap_masks,
    "patient_id changed": _set("patient_id", value="SOMEONE-ELSE"),
    "plan changed": _set("plan", "applicator_mm", value=50),
    "dose grid moved": lambda m: m["dose"]["patient_from_voxel"][1].__setitem__(3, 99.0),
    "masks.npz removed from files": _drop("files", "masks.npz"),
    "ct.npy removed from files": _drop("files", "ct.npy"),
    "ct file outside the folder": _set("ct", "file", value="../ct.npy"),
    "structure colour changed": lambda m: m["structures"][0].__setitem__("color_rgb", [0, 0, 0]),
    "seal removed": _drop("manifest_sha256"),
}


@pytest.mark.parametrize("what", sorted(TAMPERING))
def test_edited_manifest_is_refused(case, tmp_path: Path, what: str) -> None:
    folder = save_case(case, tmp_path / "c")
    _edit_manifest(folder, TAMPERING[what])
    with pytest.raises(InputError, match=r"manifest\.json: the manifest (does not match its|"
                                         r"has no) seal"):
        load_case(folder)


@pytest.mark.parametrize(("change", "message"), [
    (_drop("files", "masks.npz"), r"masks\.npz: not covered by a checksum"),
    (_drop("files", "dose.npy"), r"dose\.npy: not covered by a checksum"),
    (_set("ct", "file", value="../ct.npy"), r"file '\.\./ct\.npy' is not a plain file name"),
    (_set("files", "/etc/passwd", value="0" * 64), r"'/etc/passwd' is not a plain file name"),
])
def test_resealed_manifest_still_needs_its_files_inside_the_folder(case, tmp_path: Path,
                                                                   change, message) -> None:
    folder = save_case(case, tmp_path / "c")
    _edit_manifest(folder, change, reseal=True)
    with pytest.raises(InputError, match=message):
        load_case(folder)


def test_tampering_is_detected_for_every_edit(case, tmp_path: Path) -> None:
    detected = 0
    for n, change in enumerate(TAMPERING.values()):
        folder = save_case(case, tmp_path / f"c{n}")
        _edit_manifest(folder, change)
        try:
            load_case(folder)
        except InputError:
            detected += 1
    assert detected == len(TAMPERING)


def test_unsealed_version_1_case_loads_with_a_warning_and_can_be_sealed(
        case, tmp_path: Path, caplog) -> None:
    from models.patient.case_store import seal_case

    folder = save_case(case, tmp_path / "c")
    _edit_manifest(folder, lambda m: (m.pop("manifest_sha256"),
                                      m.__setitem__("format_version", 1)))
    with caplog.at_level("WARNING"):
        back = load_case(folder)
    assert "not protected" in caplog.text
    np.testing.assert_array_equal(back.ct.array, case.ct.array)
    seal_case(folder)
    assert json.loads((folder / "manifest.json").read_text())["format_version"] == 2
    caplog.clear()
    with caplog.at_level("WARNING"):
        load_case(folder)
    assert "not protected" not in caplog.text
    _edit_manifest(folder, _shift_origin)
    with pytest.raises(InputError, match="seal"):
        load_case(folder)


def test_damaged_masks_archive_is_one_line(case, tmp_path: Path) -> None:
    folder = save_case(case, tmp_path / "c")
    (folder / "masks.npz").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(InputError, match=r"masks\.npz: checksum mismatch"):
        load_case(folder)
    with pytest.raises(InputError, match=r"inconsistent case folder \(BadZipFile"):
        load_case(folder, verify=False)


def test_a_failed_forced_save_keeps_the_old_case(case, tmp_path: Path, monkeypatch) -> None:
    folder = save_case(case, tmp_path / "c")
    other = make_phantom(spacing_mm=(4.0, 4.0, 5.0))

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        save_case(other, folder, force=True)
    monkeypatch.undo()
    back = load_case(folder)
    np.testing.assert_array_equal(back.ct.array, case.ct.array)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]   # no staging left behind


def test_case_folder_is_owner_only_whatever_the_umask(case, tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        folder = save_case(case, tmp_path / "new" / "Smithson_Johanna")
        save_case(case, folder, force=True)   # the swapped-in folder too
    finally:
        os.umask(old)
    assert folder.stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "new").stat().st_mode & 0o777 == 0o700
    modes = {p.name: p.stat().st_mode & 0o777 for p in folder.iterdir()}
    assert "manifest.json" in modes and set(modes.values()) == {0o600}, modes
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == ["Smithson_Johanna"]


@pytest.mark.slow
def test_sigkill_during_forced_saves_leaves_one_whole_case(tmp_path: Path) -> None:
    """``case import --force`` killed at 12 random moments: the folder always loads (seal
    and checksums) as the old case or the new one, never a mix, with no stray files."""
    import random

    from benchmarks.bench_integrity import case_kill_runs

    runs, seen = case_kill_runs(tmp_path / "c", runs=12, rng=random.Random(7))
    assert runs == 12
    assert seen == {"IORT-PHANTOM", "SECOND"}   # kills landed before and after swaps
    assert sorted(p.name for p in tmp_path.iterdir())[-1] == "c"


def test_a_sealed_manifest_edited_down_to_version_1_is_refused(case, tmp_path: Path) -> None:
    """Found by the integrity benchmark: format_version 2 -> 1 skipped the seal check."""
    folder = save_case(case, tmp_path / "c")
    _edit_manifest(folder, lambda m: (m.__setitem__("format_version", 1),
                                      m.__setitem__("patient_id", "SOMEONE-ELSE")))
    with pytest.raises(InputError, match="version was edited"):
        load_case(folder)

def test_edits_are_saved_in_the_sealed_case_folder(case, tmp_path: Path) -> None:
    from models.patient.case_store import EDITS_FILE, load_edits, save_edits
    from models.patient.edits import EditList, Retraction

    folder = save_case(case, tmp_path / "c")
    assert len(load_edits(folder)) == 0
    move = np.eye(4)
    move[:3, 3] = (0.0, -20.0, 0.0)
    edits = EditList([Retraction("BOWEL", move)])
    save_edits(folder, edits)
    assert load_edits(folder).to_json() == edits.to_json()
    load_case(folder)                                   # the case still loads, sealed
    manifest = json.loads((folder / "manifest.json").read_text())
    assert EDITS_FILE in manifest["files"]
    # an edited edits file is refused, as is one the manifest does not list
    path = folder / EDITS_FILE
    text = path.read_text()
    path.write_text(text.replace("-20.0", "-40.0"))
    with pytest.raises(InputError, match="checksum mismatch"):
        load_edits(folder)
    path.write_text(text)
    save_edits(folder, EditList())                      # none left: the file goes
    assert not path.exists() and len(load_edits(folder)) == 0
    path.write_text(text)
    with pytest.raises(InputError, match="not covered by a checksum"):
        load_edits(folder)
    path.unlink()
    # an edit the case refuses is not saved
    far = np.eye(4)
    far[:3, 3] = (0.0, 0.0, 5000.0)
    with pytest.raises(InputError, match="outside the CT"):
        save_edits(folder, EditList([Retraction("BOWEL", far)]))
    assert not path.exists()
