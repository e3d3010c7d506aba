"""Fuzz a saved case folder: edits of ``manifest.json`` and damage to its data files.

Oracle: :func:`models.patient.case_store.load_case` refuses (one-line InputError naming
the folder or file) unless the edited manifest means exactly the saved one (same canonical
JSON) and the data files are unchanged; whatever it loads equals the saved case.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.harness import (
    fresh_folder,
    fuzz_settings,
    logged_warnings,
    mutated_bytes,
    mutated_json,
    run_case,
    workspace,
)

pytestmark = pytest.mark.fuzz

_WORK = workspace("case")


def _saved_case():
    from models.patient.case import Case, Structure
    from models.patient.case_store import save_case
    from models.patient.volume import Volume

    rng = np.random.default_rng(5)
    shape = (4, 6, 7)
    ct = Volume.from_grid(rng.normal(0, 300, shape).astype(np.float32),
                          spacing_mm=(1.0, 1.5, 2.0), origin_mm=(3.0, -4.0, 5.0))
    ctv = np.zeros(shape, bool)
    ctv[1:3, 2:4, 2:5] = True
    case = Case(ct=ct, structures={"CTV": Structure("CTV", ctv, roi_type="CTV")},
                fiducials_lps={"FID1": np.array([1.0, 2.0, 3.0])}, patient_id="P1",
                patient_name="Case^Fuzz", plan={"machine": "liac", "energy_mev": 8.0})
    folder = save_case(case, _WORK / "base")
    return case, {p.name: p.read_bytes() for p in folder.iterdir()}


_CASE, _FILES = _saved_case()
_MANIFEST = json.loads(_FILES["manifest.json"])


def _canonical(doc) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


@st.composite
def case_edit(draw: st.DrawFn) -> dict[str, bytes]:
    files = dict(_FILES)
    kind = draw(st.sampled_from(["manifest", "manifest", "manifest_bytes", "data"]))
    if kind == "manifest":
        files["manifest.json"] = json.dumps(draw(mutated_json(_MANIFEST))).encode()
    elif kind == "manifest_bytes":
        files["manifest.json"] = draw(mutated_bytes(_FILES["manifest.json"]))
    else:
        name = draw(st.sampled_from(sorted(n for n in _FILES if n != "manifest.json")))
        files[name] = draw(mutated_bytes(_FILES[name], max_edits=2))
    return files


def check_case(files: dict[str, bytes]) -> None:
    from models.patient.case_store import load_case

    folder = fresh_folder(_WORK / "case", files)
    with logged_warnings("models.patient.case_store") as warned:
        case = run_case("case_manifest", folder, lambda: load_case(folder))
    if case is None:
        return
    manifest = json.loads(files["manifest.json"])
    if manifest.get("format_version") == 1 and "manifest_sha256" not in manifest:
        # a case saved before manifests were sealed: loaded as it says, with a warning
        assert any("not protected against editing" in line for line in warned)
        return
    assert _canonical(json.loads(files["manifest.json"])) == _canonical(_MANIFEST), \
        "an edited manifest was loaded"
    for name, data in files.items():   # the manifest's whitespace may differ
        assert name == "manifest.json" or data == _FILES[name], f"a damaged {name} was loaded"
    np.testing.assert_array_equal(case.ct.array, _CASE.ct.array)
    np.testing.assert_array_equal(case.ct.patient_from_voxel, _CASE.ct.patient_from_voxel)
    assert sorted(case.structures) == sorted(_CASE.structures) and case.patient_id == "P1"
    np.testing.assert_array_equal(case.structures["CTV"].mask, _CASE.structures["CTV"].mask)
    np.testing.assert_array_equal(case.fiducials_lps["FID1"], _CASE.fiducials_lps["FID1"])
    assert case.plan == _CASE.plan


@fuzz_settings()
@given(case_edit())
def test_case_folder(files) -> None:
    check_case(files)
