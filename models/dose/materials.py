"""Material data for dose calculation: CT number -> relative stopping power, shielding metals.

Both tables live in ``assets/beams/materials.json`` with their provenance; nothing is
buried in code. The HU -> RSP table is piecewise linear; :func:`rsp_lookup_table` turns it
into a uniform 1-HU lookup table that the numba kernels index directly.
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


@lru_cache(maxsize=1)
def hu_rsp_table() -> HuRspTable:
    """The shipped HU -> relative stopping power table."""
    raw = _materials()["hu_to_rsp"]
    hu = np.asarray(raw["hu"], dtype=np.float64)
    rsp = np.asarray(raw["rsp"], dtype=np.float64)
    if hu.shape != rsp.shape or np.any(np.diff(hu) <= 0) or np.any(rsp < 0):
        raise InputError("materials.json hu_to_rsp: hu must increase, rsp be >= 0, same length")
    return HuRspTable(hu, rsp, str(raw["provenance"]))


@lru_cache(maxsize=1)
def rsp_lookup_table() -> np.ndarray:
    """RSP at integer HU from :data:`LUT_HU_MIN` to the table's last HU, shape (N,) float64."""
    table = hu_rsp_table()
    hu = np.arange(LUT_HU_MIN, table.hu[-1] + 1.0)
    return table(hu)


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
