"""PTW .mcc water-tank files: a synthetic file is read; bad files give one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.base.errors import InputError
from models.beams.commissioning import csv_beam_curves, read_mcc

DATA = Path(__file__).resolve().parents[2] / "data" / "synthetic_12mev_100mm.mcc"


def test_synthetic_mcc_gives_depth_dose_and_both_profiles():
    curves = read_mcc(DATA, energy_mev=12, diameter_mm=100)
    # the file holds build_depth_dose of R90 28.8 / R50 43.2 every 2 mm: first rows 92.5, ...
    assert curves.depth_mm[:3].tolist() == [0.0, 2.0, 4.0]
    assert curves.depth_dose_percent.max() == pytest.approx(100.0, abs=0.2)
    # renormalised to the sampled maximum (99.97 % at 18 mm), hence 92.52
    assert curves.depth_dose_percent[0] == pytest.approx(92.5, abs=0.05)
    assert curves.profile_depth_mm == 20.0
    # erf edges at +-50 mm: 50 % there, 100 % at the centre
    assert np.interp(50.0, curves.x_mm, curves.profile_x_percent) == pytest.approx(50.0, abs=0.1)
    assert np.interp(-50.0, curves.y_mm, curves.profile_y_percent) == pytest.approx(50.0, abs=0.1)
    assert curves.key == (12.0, 100.0, 0.0)


def _mcc(tmp_path: Path, data_lines: list[str], extra: str = "") -> Path:
    text = ("BEGIN_SCAN_DATA\n\tBEGIN_SCAN  1\n\t\tSCAN_CURVETYPE=PDD\n" + extra
            + "\t\tBEGIN_DATA\n" + "".join(f"\t\t\t{line}\n" for line in data_lines)
            + "\t\tEND_DATA\n\tEND_SCAN  1\nEND_SCAN_DATA\n")
    path = tmp_path / "scan.mcc"
    path.write_text(text)
    return path


GOOD = ["0.0\t90", "2.0\t100", "4.0\t80", "6.0\t40", "8.0\t5"]


@pytest.mark.parametrize(("lines", "extra", "line_no", "what"), [
    ([*GOOD[:2], "4.0", *GOOD[3:]], "", 7, "missing value"),
    ([*GOOD[:2], "1.0\t80", *GOOD[3:]], "", 7, "not greater than the previous"),
    ([*GOOD[:2], "4.0\tnan", *GOOD[3:]], "", 7, "NaN"),
    (GOOD, "\t\tDEPTH_UNIT=cm\n", 4, "must be in mm"),
    ([*GOOD[:2], "4.0\t-3", *GOOD[3:]], "", 7, "negative dose"),
])
def test_bad_mcc_gives_one_line_naming_file_and_line(tmp_path, lines, extra, line_no, what):
    path = _mcc(tmp_path, lines, extra)
    with pytest.raises(InputError) as err:
        read_mcc(path, energy_mev=12, diameter_mm=100)
    message = str(err.value)
    assert "\n" not in message
    assert str(path) in message and f"line {line_no}:" in message and what in message


def test_mcc_without_depth_dose_is_refused(tmp_path):
    path = tmp_path / "p.mcc"
    path.write_text(DATA.read_text().replace("SCAN_CURVETYPE=PDD", "SCAN_CURVETYPE=OTHER"))
    with pytest.raises(InputError, match="no scan with SCAN_CURVETYPE=PDD"):
        read_mcc(path, energy_mev=12, diameter_mm=100)


def test_cut_mcc_is_refused(tmp_path):
    path = tmp_path / "cut.mcc"
    path.write_text("\n".join(DATA.read_text().splitlines()[:20]))
    with pytest.raises(InputError, match="no END_SCAN"):
        read_mcc(path, energy_mev=12, diameter_mm=100)


def test_csv_gives_depth_only_curves(tmp_path):
    path = tmp_path / "pdd.csv"
    path.write_text("depth_mm,dose\n0,90\n2,100\n4,80\n6,40\n8,5\n")
    curves = csv_beam_curves(path, energy_mev=6, diameter_mm=40)
    assert curves.depth_dose_percent.tolist() == [90, 100, 80, 40, 5]
    assert curves.x_mm.size == 0 and curves.key == (6.0, 40.0, 0.0)


@pytest.mark.parametrize("depth", ["-1.0", "nan", "inf"])
def test_a_profile_depth_above_the_water_or_not_finite_is_refused(tmp_path, depth) -> None:
    """Found by the fuzzer: SCAN_DEPTH=-1.0 (and nan) were taken as the profiles' depth."""
    text = DATA.read_text().replace("SCAN_DEPTH=20.00", f"SCAN_DEPTH={depth}")
    assert f"SCAN_DEPTH={depth}" in text
    path = tmp_path / "scan.mcc"
    path.write_text(text)
    with pytest.raises(InputError, match=r"scan\.mcc: line \d+: SCAN_DEPTH"):
        read_mcc(path, energy_mev=12.0, diameter_mm=100.0)


def test_a_profile_without_scan_depth_is_refused(tmp_path) -> None:
    """Found by the fuzzer: a profile scan without SCAN_DEPTH gave profiles at depth NaN."""
    text = DATA.read_text().replace("SCAN_DEPTH=20.00", "SCAN_DIPTH=20.00")
    path = tmp_path / "scan.mcc"
    path.write_text(text)
    with pytest.raises(InputError, match=r"scan\.mcc: line \d+: profile scan without SCAN_DEPTH"):
        read_mcc(path, energy_mev=12.0, diameter_mm=100.0)
