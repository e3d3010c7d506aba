"""CASE arguments and transform files are read one way by every command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from guidance.cli.inputs import load_case_spec, read_transform_file
from models.base.errors import InputError
from models.base.transforms import transform_from_rotvec
from models.dicom.writer import write_phantom
from models.patient.case_store import save_case
from models.patient.phantom import make_phantom

SPACING = (4.0, 4.0, 5.0)


def test_phantom_case_folder_and_dicom_folder_give_the_same_case(tmp_path: Path) -> None:
    case = make_phantom(spacing_mm=SPACING)
    save_case(case, tmp_path / "case")
    write_phantom(tmp_path / "dicom", spacing_mm=SPACING)
    from_store = load_case_spec(tmp_path / "case")
    from_dicom = load_case_spec(str(tmp_path / "dicom"))
    for loaded in (from_store, from_dicom):
        np.testing.assert_allclose(loaded.ct.patient_from_voxel, case.ct.patient_from_voxel,
                                   atol=1e-6)
        np.testing.assert_array_equal(loaded.ct.array, case.ct.array)
        assert set(loaded.structures) == set(case.structures)


def test_phantom_keyword() -> None:
    assert "CTV" in load_case_spec("phantom").structures


@pytest.mark.parametrize("spec", ["no/such/folder", "phantom.json"])
def test_unknown_case_names_the_choices(spec: str) -> None:
    with pytest.raises(InputError, match="case folder"):
        load_case_spec(spec)


def test_empty_folder_is_neither_case_nor_dicom(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a case folder"):
        load_case_spec(tmp_path)


@pytest.mark.parametrize("form", ["object", "list", "text"])
def test_transform_file_forms(tmp_path: Path, form: str, rng: np.random.Generator) -> None:
    truth = transform_from_rotvec(rng.normal(size=3), rng.normal(size=3) * 50)
    path = tmp_path / "pose.txt"
    if form == "object":
        path.write_text(json.dumps({"patient_from_applicator": truth.tolist()}))
    elif form == "list":
        path.write_text(json.dumps(truth.tolist()))
    else:
        np.savetxt(path, truth)
    np.testing.assert_allclose(read_transform_file(path, "patient_from_applicator",
                                                   option="--pose"), truth, atol=1e-12)


@pytest.mark.parametrize(("content", "message"), [
    ('{"other": 1}', "has no 'patient_from_applicator'"),
    ("[[1, 2], [3, 4]]", "4x4"),
    ("not a matrix at all", "neither JSON nor"),
    (json.dumps(np.diag([1.0, 1.0, -1.0, 1.0]).tolist()), "reflection"),
])
def test_bad_transform_files_name_option_and_file(tmp_path: Path, content: str,
                                                  message: str) -> None:
    path = tmp_path / "pose.json"
    path.write_text(content)
    with pytest.raises(InputError, match=message) as exc:
        read_transform_file(path, "patient_from_applicator", option="--pose")
    assert str(exc.value).startswith(f"--pose {path}")


def test_missing_transform_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read"):
        read_transform_file(tmp_path / "absent.json", "patient_from_reference",
                            option="--registration")


def test_a_transform_beyond_ten_metres_is_refused(tmp_path) -> None:
    """Found by the fuzzer: a translation of 1e308 mm was read as a valid rigid pose."""
    pose = np.eye(4)
    pose[2, 3] = 1e308
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({"patient_from_applicator": pose.tolist()}))
    with pytest.raises(InputError, match=r"--plan .*plan\.json.*beyond 10000 mm"):
        read_transform_file(path, "patient_from_applicator", option="--plan")

def test_session_logs_name_a_case_by_its_keyed_pseudonym(tmp_path: Path) -> None:
    """A case folder named after the patient: the log holds neither the folder nor the ID,
    unless --log-identifiers asks for them."""
    import argparse

    from guidance.cli.inputs import case_label
    from guidance.record.session_log import SessionLog
    from models.base.pseudonyms import SiteKey
    from models.patient.case_store import save_case
    from models.patient.phantom import make_phantom

    case = make_phantom(spacing_mm=(6.0, 6.0, 8.0))
    case.patient_id, case.patient_name = "MRN-0047113", "Smithson^Johanna"
    folder = save_case(case, tmp_path / "Smithson_Johanna_MRN-0047113")
    key = tmp_path / "site-key"
    args = argparse.Namespace(case=str(folder), site_key=key, log_identifiers=False)
    label = case_label(load_case_spec(str(folder)), args)
    assert label == SiteKey.load(key).pseudonym("MRN-0047113", prefix="case-")
    assert label != case_label(case, argparse.Namespace(case="x", site_key=tmp_path / "k2",
                                                        log_identifiers=False))
    log_path = tmp_path / "s.sqlite"
    with SessionLog.create(log_path, case_id=label) as slog:
        slog.log_action("mode", mode="oncologist")
    data = b"".join(p.read_bytes() for p in tmp_path.glob("s.sqlite*"))
    for secret in (b"Smithson", b"Johanna", b"MRN-0047113", str(folder).encode()):
        assert secret not in data
    named = case_label(case, argparse.Namespace(case=str(folder), site_key=key,
                                                log_identifiers=True))
    assert "MRN-0047113" in named and str(folder) in named


def test_the_log_names_a_video_source_only_by_its_kind(tmp_path: Path) -> None:
    import argparse

    from guidance.cli.commands.run import _source_label

    video = tmp_path / "Smithson_Johanna.mp4"
    video.write_bytes(b"")
    for source, logged in ((str(video), "file"), (str(tmp_path), "folder"), ("sim", "sim"),
                           ("webcam:1", "webcam:1"), ("igtl:Video", "igtl:Video")):
        args = argparse.Namespace(source=source, log_identifiers=False)
        assert _source_label(args) == logged
    assert _source_label(argparse.Namespace(source=str(video), log_identifiers=True)) == \
        str(video)
