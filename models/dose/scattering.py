"""Multiple Coulomb scattering of electron pencils: Fermi-Eyges lateral spread.

* :func:`scattering_power_per_mm` — linear angular scattering power of water
  ``T = (Es / (p beta c))^2 / X0`` at Harder's mean energy ``E(z) = E0 (1 - z / Rp)``.
* :func:`fermi_eyges_sigma_mm` — ``sigma^2(z) = int_0^z T(u) (z - u)^2 du`` in water
  (Eyges 1948, doi:10.1103/PhysRev.74.1534).
* :func:`fermi_eyges_along_path` — the same along a heterogeneous pencil path with the
  geometric lever arm (Hogstrom, Mills & Almond 1981, doi:10.1088/0031-9155/26/3/008).
"""

from __future__ import annotations

import numpy as np

from models.beams.depth_dose import lookup_uniform
from models.dose.depth_sums import cumsum_planes, hold_beyond

#: Radiation length of water (mm), Particle Data Group.
WATER_X0_MM = 360.8

#: Electron rest energy (MeV).
ELECTRON_MASS_MEV = 0.511

#: Lowest energy (MeV) used in the scattering power (avoids the divergence at the range end).
MIN_SCATTER_ENERGY_MEV = 0.5


def scattering_power_per_mm(depth_mm: np.ndarray, mean_energy_mev: float, rp_mm: float,
                            scattering_energy_mev: float) -> np.ndarray:
    """Linear angular scattering power of water ``T = (Es / (p beta c))^2 / X0`` (rad^2/mm).

    At Harder's mean energy ``E(z) = E0 (1 - z / Rp)`` (clamped at
    :data:`MIN_SCATTER_ENERGY_MEV`) for the water depths ``depth_mm`` (any shape).
    """
    z = np.asarray(depth_mm, dtype=np.float64)
    energy = np.maximum(mean_energy_mev * (1.0 - z / rp_mm), MIN_SCATTER_ENERGY_MEV)
    pbc = energy * (energy + 2.0 * ELECTRON_MASS_MEV) / (energy + ELECTRON_MASS_MEV)
    return (scattering_energy_mev / pbc) ** 2 / WATER_X0_MM


def fermi_eyges_sigma_mm(depth_mm: np.ndarray, mean_energy_mev: float, rp_mm: float,
                         scattering_energy_mev: float) -> np.ndarray:
    """Fermi-Eyges lateral spread (mm, one axis) of a pencil in water versus depth.

    ``sigma^2(z) = int_0^z T(u) (z - u)^2 du`` (Eyges 1948, doi:10.1103/PhysRev.74.1534)
    with :func:`scattering_power_per_mm`.

    Parameters
    ----------
    depth_mm : numpy.ndarray
        Shape (N,), increasing water depths starting at 0.
    mean_energy_mev, rp_mm, scattering_energy_mev : float
        E0 at the surface, practical range and the effective constant Es.
    """
    z = np.asarray(depth_mm, dtype=np.float64)
    t = scattering_power_per_mm(z, mean_energy_mev, rp_mm, scattering_energy_mev)
    dz = np.diff(z, prepend=z[0])
    a0 = np.cumsum(t * dz)
    a1 = np.cumsum(t * z * dz)
    a2 = np.cumsum(t * z * z * dz)
    return np.sqrt(np.maximum(z * z * a0 - 2.0 * z * a1 + a2, 0.0))


def fermi_eyges_along_path(z_mm: np.ndarray, seg_wet: np.ndarray, seg_mid: np.ndarray,
                           zeff: np.ndarray, depth_mm: np.ndarray,
                           power_per_mm: np.ndarray, r50_mm: float, *,
                           seg_scatter: np.ndarray | None = None) -> np.ndarray:
    """Multiple-scattering sigma (mm) of pencils through a heterogeneous path.

    Fermi-Eyges with the geometric lever arm (Hogstrom et al. 1981):
    ``sigma^2(z) = sum_m T_w(zeff_m) s_m (z - u_m)^2`` over the segments m before z, where
    ``s_m`` is the segment's scattering thickness (``seg_scatter``: length x linear
    scattering power relative to water, e.g. 2.4 per mm of cortical bone against 1.7 of
    stopping; default ``seg_wet``, scattering proportional to stopping power), ``T_w``
    water's scattering power at the segment's water depth and ``u_m`` its geometric middle.
    In water this is the water table's integral; in a uniform medium whose scattering and
    stopping are both rho times water's it gives ``sigma_w(rho z) / rho``. Beyond R50 of
    water depth sigma is held (as in water).

    Parameters
    ----------
    z_mm : numpy.ndarray
        (nz,) plane depths (mm, applicator frame).
    seg_wet, seg_mid : numpy.ndarray
        (nz - 1, P) segment water-equivalent thickness (mm) and geometric middle (mm).
    seg_scatter : numpy.ndarray, optional
        (nz - 1, P) segment scattering thickness (mm of water's scattering power).
    zeff : numpy.ndarray
        (nz, P) water depth at the planes.
    depth_mm, power_per_mm : numpy.ndarray
        Water scattering power ``T`` (rad^2/mm) tabulated on uniform water depths from 0
        (:func:`scattering_power_per_mm`).
    r50_mm : float
        Water depth beyond which sigma is held.
    """
    zeff_mid = zeff[:-1] + 0.5 * seg_wet
    weight = lookup_uniform(zeff_mid, depth_mm, power_per_mm,
                            beyond=float(power_per_mm[-1])) * (
        seg_wet if seg_scatter is None else seg_scatter)
    zeros = np.zeros((1, seg_wet.shape[1]))
    a0 = np.vstack([zeros, cumsum_planes(weight)])
    a1 = np.vstack([zeros, cumsum_planes(weight * seg_mid)])
    a2 = np.vstack([zeros, cumsum_planes(weight * seg_mid * seg_mid)])
    z = z_mm[:, None]
    sigma = np.sqrt(np.maximum(z * z * a0 - 2.0 * z * a1 + a2, 0.0))
    return hold_beyond(sigma, zeff, r50_mm)
