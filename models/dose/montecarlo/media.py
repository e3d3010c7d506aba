"""CT numbers -> Monte Carlo media and mass densities (the pencil beam's HU table).

The Monte Carlo uses the **same** HU table as the pencil beam
(:func:`models.dose.materials.hu_rsp_table`, relative stopping power RSP): a voxel's medium
is chosen by CT-number interval (``assets/beams/mc_media.json``: air, lung, water, ICRP
cortical bone) and its mass density is ``RSP(HU) / s_medium``, ``s_medium`` being the
medium's mass collision stopping power relative to water. Both engines therefore slow the
electrons equally in every voxel; the Monte Carlo adds the medium's own scattering,
secondaries and backscatter.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from models.base.errors import InputError
from models.dose.materials import hu_rsp_table, read_beam_asset

#: Medium index ompmc reads as vacuum (the applicator lumen, outside the CT).
VACUUM = 0


@dataclass(frozen=True, eq=False)
class MediaTable:
    """HU -> medium rule.

    ``names`` (M,) ompmc PEGS4 medium names (index 1..M in the phantom); ``hu_below`` (M-1,)
    upper HU edge of each medium but the last; ``stopping_ratio`` (M,) mass collision
    stopping power of each medium relative to water; ``shielding``: disc metal ->
    (medium name, density g/cm3).
    """

    names: tuple[str, ...]
    hu_below: np.ndarray
    stopping_ratio: np.ndarray
    shielding: dict[str, tuple[str, float]]
    provenance: str

    def media_of(self, hu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Medium index (1-based, int32) and mass density (g/cm3, float64) of CT numbers.

        Parameters
        ----------
        hu : numpy.ndarray
            CT numbers (HU), any shape.

        Returns
        -------
        tuple of numpy.ndarray
            ``(medium, density)`` shaped like ``hu``.
        """
        hu = np.asarray(hu, dtype=np.float64)
        index = np.searchsorted(self.hu_below, hu, side="right").astype(np.int32)
        rsp = hu_rsp_table()(hu)
        density = rsp / self.stopping_ratio[index]
        return index + 1, density


@lru_cache(maxsize=1)
def media_table() -> MediaTable:
    """The shipped HU -> medium table (``assets/beams/mc_media.json``)."""
    raw = read_beam_asset("mc_media.json")
    try:
        entries = raw["media"]
        names = tuple(str(e["name"]) for e in entries)
        edges = np.array([float(e["hu_below"]) for e in entries[:-1]])
        ratio = np.array([float(e["mass_stopping_power_ratio"]) for e in entries])
        shield = {k: (str(v["name"]), float(v["density_g_cm3"]))
                  for k, v in raw["shielding"].items() if k != "provenance"}
        provenance = str(raw["provenance"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"mc_media.json: malformed media table ({exc}); restore the shipped "
                         "file") from exc
    if entries[-1]["hu_below"] is not None or np.any(np.diff(edges) <= 0) or np.any(
            ratio <= 0):
        raise InputError("mc_media.json: hu_below must increase (null for the last medium) "
                         "and every stopping-power ratio be positive")
    return MediaTable(names, edges, ratio, shield, provenance)
