"""A disc placed in the patient reaches the electron engine as the slab it is in the beam."""

from __future__ import annotations

import numpy as np
import pytest

from models.base.errors import InputError
from models.beams.library import ElectronBeam
from models.dose.disc import disc_in_beam
from models.dose.electron import ShieldingDisc, compute_electron_dose
from models.dose.water import water_phantom, water_pose
from models.patient.edits import DiscPlacement


@pytest.fixture(scope="module")
def water():
    return water_phantom(half_width_mm=60.0, depth_mm=80.0, spacing_mm=2.0)


def _disc_pose(centre_mm, tilt_deg: float = 0.0) -> np.ndarray:
    pose = np.eye(4)
    t = np.radians(tilt_deg)
    pose[:3, :3] = [[1, 0, 0], [0, np.cos(t), -np.sin(t)], [0, np.sin(t), np.cos(t)]]
    pose[:3, 3] = centre_mm
    return pose


def test_a_disc_placed_on_the_axis_gives_the_engine_disc_dose(water) -> None:
    beam = ElectronBeam("liac", 8.0, 60.0)
    placed = DiscPlacement("lead", 80.0, 3.0, _disc_pose((0.0, 0.0, 31.5)))
    disc = disc_in_beam(placed, water_pose(0.0))
    assert disc == ShieldingDisc("lead", 80.0, 3.0, 30.0)       # upstream face at 30 mm
    a = compute_electron_dose(water, water_pose(0.0), beam, disc=disc).dose.array
    b = compute_electron_dose(water, water_pose(0.0), beam,
                              disc=ShieldingDisc("lead", 80.0, 3.0, 30.0)).dose.array
    np.testing.assert_array_equal(a, b)


def test_an_off_axis_disc_shields_only_its_side(water) -> None:
    beam = ElectronBeam("liac", 8.0, 60.0)
    pose = water_pose(0.0)
    open_field = compute_electron_dose(water, pose, beam)
    # a 40 mm disc centred 20 mm towards +x, 3 mm lead: 9.5 mm water/mm -> stops 8 MeV
    placed = DiscPlacement("lead", 40.0, 3.0, _disc_pose((20.0, 0.0, 21.5)))
    shielded = compute_electron_dose(water, pose, beam, disc=disc_in_beam(placed, pose))
    dose, ref = shielded.dose, open_field.dose

    def at(vol, x, z) -> float:
        return float(vol.sample(np.array([[x, 0.0, z]]))[0])
    # 30 mm deep: beyond the disc under it, the dose is gone; on the other side it is not
    assert at(dose, 20.0, 30.0) < 0.2 * at(ref, 20.0, 30.0)
    assert at(dose, -20.0, 30.0) == pytest.approx(at(ref, -20.0, 30.0), rel=0.05)


def test_tilt_thickens_the_slab_and_too_much_tilt_is_refused() -> None:
    disc = disc_in_beam(DiscPlacement("steel", 60.0, 2.0, _disc_pose((0, 0, 40.0), 15.0)),
                        np.eye(4))
    assert disc.thickness_mm == pytest.approx(2.0 / np.cos(np.radians(15.0)), rel=1e-9)
    with pytest.raises(InputError, match="tilted 35 deg"):
        disc_in_beam(DiscPlacement("steel", 60.0, 2.0, _disc_pose((0, 0, 40.0), 35.0)),
                     np.eye(4))
    with pytest.raises(InputError, match="above the applicator"):
        disc_in_beam(DiscPlacement("lead", 60.0, 2.0, _disc_pose((0, 0, -10.0))), np.eye(4))
