"""Material data for dose calculation: CT number -> density -> tissue, shielding metals.

Everything lives in ``assets/beams/materials.json`` with its provenance; nothing is buried
in code. A CT number maps to a mass density (piecewise linear, Schneider et al. 2000) and a
tissue (HU bins; from 100 HU a continuous soft-tissue/cortical-bone mixture by bone mass
fraction), whose electron properties relative to water are

* ``rsp``: linear stopping power (density x mass collision stopping-power ratio),
* ``scatter``: linear angular scattering power (density x X0_water / X0_tissue),
* ``stopping_ratio``: mass collision stopping-power ratio (dose to medium / dose to water),
* ``ebf_a``: amplitude of the electron backscatter factor of an interface into the tissue,
  ``a = k (Z_eff / Z_water - 1)`` (0 for water and lighter tissue).

:func:`tissue_lookup` tabulates them at every integer HU from :data:`LUT_HU_MIN` (uniform
lookup tables that the numba kernels index directly).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from assets import asset_path
from models.base.errors import InputError
from models.base.files import read_json_file

#: First HU of the uniform lookup table (values below are clamped to it).
LUT_HU_MIN = -1024.0


@dataclass(frozen=True, eq=False)
class HuRspTable:
    """Piecewise-linear CT number (HU) -> stopping power relative to water.

    ``hu`` and ``rsp`` have shape (N,), ``hu`` strictly increasing.
    """

    hu: np.ndarray
    rsp: np.ndarray
    provenance: str

    def __call__(self, hu: np.ndarray) -> np.ndarray:
        """Relative stopping power of CT numbers (any shape; clamped at the table ends)."""
        return np.interp(np.asarray(hu, dtype=np.float64), self.hu, self.rsp)


@dataclass(frozen=True)
class ShieldMaterial:
    """A shielding-disc metal.

    ``water_equivalent_per_mm``: mm of water with the same electron range loss as 1 mm of
    metal; the electron backscatter factor at the interface is
    ``EBF = 1 + ebf_a * exp(-ebf_b_per_mev * E_d)`` for a mean interface energy ``E_d``
    (Klevenhagen et al. 1982, doi:10.1088/0031-9155/27/3/003), and the extra dose falls off
    upstream as ``exp(-d / backscatter_relaxation_mm)`` (d in mm of water).
    """

    name: str
    water_equivalent_per_mm: float
    ebf_a: float
    ebf_b_per_mev: float
    backscatter_relaxation_mm: float
    density_g_cm3: float = 7.9
    x0_g_cm2: float = 13.84
    z_eff: float = 26.0

    @property
    def scatter_per_mm(self) -> float:
        """Linear angular scattering power relative to water (density x X0_w / X0)."""
        return self.density_g_cm3 * WATER_X0_G_CM2 / self.x0_g_cm2

    def backscatter_factor(self, energy_mev: float | np.ndarray) -> float | np.ndarray:
        """Electron backscatter factor (>= 1) at the interface for mean energy ``energy_mev``."""
        return 1.0 + self.ebf_a * np.exp(-self.ebf_b_per_mev * np.asarray(energy_mev))


@lru_cache(maxsize=8)
def read_beam_asset(name: str) -> dict:
    """A shipped ``assets/beams/<name>`` JSON file; :class:`InputError` naming it if broken."""
    path = asset_path("beams", name)
    return read_json_file(path, what="beam data")


def _materials() -> dict:
    return read_beam_asset("materials.json")


@dataclass(frozen=True, eq=False)
class TissueLookup:
    """Electron properties of tissue at every integer HU from :data:`LUT_HU_MIN` (N,).

    ``hu``, ``density_g_cm3``; ``rsp`` linear stopping power, ``scatter`` linear angular
    scattering power, ``stopping_ratio`` mass collision stopping power (all relative to
    water); ``ebf_a`` backscatter amplitude of an interface into the tissue; ``name`` the
    tissue bin (``"bone mixture"`` from 100 HU). ``provenance`` of the table.
    """

    hu: np.ndarray
    density_g_cm3: np.ndarray
    rsp: np.ndarray
    scatter: np.ndarray
    stopping_ratio: np.ndarray
    ebf_a: np.ndarray
    name: tuple[str, ...]
    provenance: str

    def at(self, hu: np.ndarray, what: str) -> np.ndarray:
        """Property ``what`` (a field name) at CT numbers ``hu`` (clamped, linear in HU)."""
        return np.interp(np.asarray(hu, dtype=np.float64), self.hu, getattr(self, what))


#: Radiation length of water (g/cm2), Particle Data Group.
WATER_X0_G_CM2 = 36.08


def _field(raw: dict, key: str, where: str) -> object:
    if key not in raw:
        raise InputError(f"materials.json {where}: missing {key!r}")
    return raw[key]


@lru_cache(maxsize=1)
def tissue_lookup() -> TissueLookup:
    """The shipped CT -> tissue table tabulated per integer HU (see the module docstring)."""
    raw = _field(_materials(), "ct_to_tissue", "top level")
    knots = np.asarray(_field(raw, "hu", "ct_to_tissue"), dtype=np.float64)
    rho_knots = np.asarray(_field(raw, "density_g_cm3", "ct_to_tissue"), dtype=np.float64)
    if (knots.shape != rho_knots.shape or np.any(np.diff(knots) <= 0)
            or np.any(rho_knots <= 0)):
        raise InputError("materials.json ct_to_tissue: hu must increase, density_g_cm3 be "
                         "> 0, same length")
    bins = _field(raw, "tissues", "ct_to_tissue")
    bone = _field(raw, "bone", "ct_to_tissue")
    water = _field(raw, "water", "ct_to_tissue")
    k = float(_field(_materials().get("backscatter", {}), "ebf_a_per_z", "backscatter"))
    z_water = float(water["z_eff"])
    hu = np.arange(LUT_HU_MIN, knots[-1] + 1.0)
    rho = np.interp(hu, knots, rho_knots)
    stop = np.ones_like(hu)
    inv_x0 = np.full_like(hu, 1.0 / float(water["x0_g_cm2"]))
    z_eff = np.full_like(hu, z_water)
    names = np.full(hu.shape, "bone mixture", dtype=object)
    lo = -np.inf
    for row in bins:
        sel = (hu >= lo) & (hu < float(row["hu_below"]))
        stop[sel] = float(row["stopping_ratio"])
        inv_x0[sel] = 1.0 / float(row["x0_g_cm2"])
        z_eff[sel] = float(row["z_eff"])
        names[sel] = str(row["name"])
        lo = float(row["hu_below"])
    soft = bins[-1]
    mix = hu >= lo
    # bone mass fraction of a soft-tissue/bone mixture of density rho (Schneider 2000)
    rho_s, rho_b = float(np.interp(lo, knots, rho_knots)), float(bone["density_g_cm3"])
    w = np.clip(rho_b * (rho[mix] - rho_s) / (rho[mix] * (rho_b - rho_s)), 0.0, 1.0)
    stop[mix] = (1 - w) * float(soft["stopping_ratio"]) + w * float(bone["stopping_ratio"])
    inv_x0[mix] = (1 - w) / float(soft["x0_g_cm2"]) + w / float(bone["x0_g_cm2"])
    z_eff[mix] = (1 - w) * float(soft["z_eff"]) + w * float(bone["z_eff"])
    ebf_a = k * np.maximum(z_eff / z_water - 1.0, 0.0)
    return TissueLookup(hu=hu, density_g_cm3=rho, rsp=rho * stop,
                        scatter=rho * inv_x0 * WATER_X0_G_CM2, stopping_ratio=stop,
                        ebf_a=ebf_a, name=tuple(names), provenance=str(raw["provenance"]))


@lru_cache(maxsize=1)
def hu_rsp_table() -> HuRspTable:
    """HU -> relative stopping power (from :func:`tissue_lookup`, every integer HU)."""
    table = tissue_lookup()
    return HuRspTable(table.hu, table.rsp, table.provenance)


@lru_cache(maxsize=1)
def rsp_lookup_table() -> np.ndarray:
    """RSP at integer HU from :data:`LUT_HU_MIN` to the table's last HU, shape (N,) float64."""
    return tissue_lookup().rsp


@lru_cache(maxsize=1)
def backscatter_constants() -> tuple[float, float]:
    """(b per MeV, upstream relaxation length in mm of water) of tissue interfaces."""
    raw = _field(_materials(), "backscatter", "top level")
    return float(raw["ebf_b_per_mev"]), float(raw["relaxation_mm"])


def shield_materials() -> dict[str, ShieldMaterial]:
    """Shielding materials by name (``lead``, ``steel``)."""
    raw = _materials()["shielding"]["materials"]
    return {name: ShieldMaterial(name=name, **{k: float(v) for k, v in entry.items()})
            for name, entry in raw.items()}


def shield_material(name: str) -> ShieldMaterial:
    """One shielding material; :class:`InputError` naming the valid materials otherwise."""
    materials = shield_materials()
    if name not in materials:
        raise InputError(f"unknown shielding material {name!r}; choose one of: "
                         f"{', '.join(sorted(materials))}")
    return materials[name]
