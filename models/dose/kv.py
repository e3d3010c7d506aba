"""kV spherical-applicator dose (Intrabeam-type 50 kV source): tabulated depth dose along rays.

Model
-----
The applicator frame has its origin at the centre of the sphere. In water the dose at
distance ``d`` from the sphere surface is the tabulated depth dose ``T(d)`` (% of the surface
dose, ``assets/beams/kv_spherical.json``), which contains the inverse square
``ISQ(d) = (a / (a + d))^2`` (a = sphere radius) and the attenuation ``A(d) = T(d) / ISQ(d)``.
In tissue the attenuation is read at the water-equivalent path length ``w`` from the
surface along the radial ray (CT HU -> relative stopping power, used here as a relative
attenuation scale):

    D(r) = D_surface * ISQ(d) * A(w) = D_surface * T(w) * ISQ(d) / ISQ(w)

so a medium lighter than water falls off closer to pure inverse square. The source is taken
as isotropic (the probe shaft's shadow is not modelled). Prescription is at the surface or
at a depth in water; treatment time = surface dose / surface dose rate.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from models.base.errors import InputError
from models.base.validation import as_positive, as_transform
from models.dose import kernels
from models.dose.electron import AIR_RSP
from models.dose.materials import read_beam_asset, rsp_lookup_table
from models.patient.volume import Volume


@dataclass(frozen=True, eq=False)
class KvApplicator:
    """One spherical applicator: diameter, depth dose table, surface dose rate."""

    diameter_mm: float
    depth_mm: np.ndarray          # (N,) from the surface, mm
    dose_percent: np.ndarray      # (N,) % of the surface dose
    surface_dose_rate_gy_per_min: float

    @property
    def radius_mm(self) -> float:
        """Sphere radius (mm)."""
        return 0.5 * self.diameter_mm

    def depth_dose(self, depth_mm: np.ndarray | float) -> np.ndarray:
        """Tabulated dose (% of surface) at water depths (mm); 0 beyond the table."""
        return np.interp(depth_mm, self.depth_mm, self.dose_percent, right=0.0)

    def inverse_square(self, depth_mm: np.ndarray | float) -> np.ndarray:
        """(a / (a + d))^2 for depths d (mm) from the surface."""
        a = self.radius_mm
        return (a / (a + np.maximum(depth_mm, 0.0))) ** 2


@dataclass(eq=False)
class KvDoseResult:
    """Dose of a spherical kV applicator.

    ``dose``: Gy on a grid aligned with the applicator frame (origin = sphere centre);
    ``surface_dose_gy``: dose at the sphere surface; ``treatment_time_min``: surface dose
    divided by the surface dose rate.
    """

    dose: Volume
    applicator: KvApplicator
    patient_from_applicator: np.ndarray
    prescription_gy: float
    prescription_depth_mm: float
    surface_dose_gy: float
    treatment_time_min: float
    compute_ms: float


def _catalogue() -> dict:
    return read_beam_asset("kv_spherical.json")


def kv_diameters_mm() -> tuple[float, ...]:
    """Diameters (mm) of the spherical applicators on offer."""
    return tuple(float(a["diameter_mm"]) for a in _catalogue()["applicators"])


def kv_applicator(diameter_mm: float) -> KvApplicator:
    """The catalogue applicator of that diameter; :class:`InputError` listing the valid ones."""
    raw = _catalogue()
    depth = np.asarray(raw["depth_mm"], dtype=np.float64)
    for entry in raw["applicators"]:
        if abs(float(entry["diameter_mm"]) - float(diameter_mm)) < 1e-6:
            return KvApplicator(float(entry["diameter_mm"]), depth,
                                np.asarray(entry["dose_percent"], dtype=np.float64),
                                float(entry["surface_dose_rate_gy_per_min"]))
    listed = ", ".join(f"{d:g}" for d in kv_diameters_mm())
    raise InputError(f"unknown kV spherical applicator diameter {diameter_mm!r} mm; "
                     f"choose one of: {listed} mm")


def compute_kv_dose(ct: Volume, patient_from_applicator: np.ndarray, diameter_mm: float, *,
                    prescription_gy: float = 20.0, prescription_depth_mm: float = 0.0,
                    grid_mm: float = 2.0, max_depth_mm: float = 40.0,
                    backend: str = "numba") -> KvDoseResult:
    """Dose (Gy) around a spherical kV applicator placed in a CT (see module docstring).

    Parameters
    ----------
    ct : Volume
        CT in HU.
    patient_from_applicator : numpy.ndarray
        4x4 rigid pose; the applicator frame's origin is the sphere centre.
    diameter_mm : float
        Applicator diameter (catalogue value, 15-50 mm).
    prescription_gy : float, default 20
        Dose at ``prescription_depth_mm`` in water from the surface (0 = surface).
    grid_mm : float, default 2
        Grid spacing (mm).
    max_depth_mm : float, default 40
        Dose computed up to this distance from the surface.
    backend : {"numba", "numpy"}
        Ray-marching kernel or its numpy twin.
    """
    start = time.perf_counter()
    app = kv_applicator(diameter_mm)
    rx = as_positive(prescription_gy, name="prescription_gy")
    depth_rx = as_positive(prescription_depth_mm, name="prescription_depth_mm",
                           allow_zero=True)
    if depth_rx > app.depth_mm[-1]:
        raise InputError(f"prescription_depth_mm {depth_rx:g} is beyond the table "
                         f"({app.depth_mm[-1]:g} mm)")
    h = as_positive(grid_mm, name="grid_mm")
    reach = as_positive(max_depth_mm, name="max_depth_mm")
    if backend not in ("numba", "numpy"):
        raise InputError(f"unknown backend {backend!r}; choose one of: numba, numpy")
    pose = as_transform(patient_from_applicator, name="patient_from_applicator", rigid=True)
    if not bool(ct.contains(pose[:3, 3])[0]):
        raise InputError(f"kV applicator centre {np.round(pose[:3, 3], 1).tolist()} mm (LPS) "
                         "is outside the CT; check the pose or the registration")
    n_half = math.ceil((app.radius_mm + reach) / h)
    n = 2 * n_half + 1
    applicator_from_voxel = np.diag([h, h, h, 1.0])
    applicator_from_voxel[:3, 3] = -n_half * h
    ct_from_grid = ct.voxel_from_patient @ pose @ applicator_from_voxel
    hu = np.ascontiguousarray(ct.array, dtype=np.float32)
    sample = kernels.sample_rsp if backend == "numba" else kernels.sample_rsp_numpy
    rsp, _n_out, n_nan = sample(hu, ct_from_grid, (n, n, n), rsp_lookup_table())
    if n_nan:
        raise InputError(f"CT contains NaN values at {n_nan} points around the kV applicator")
    march = kernels.kv_wepl if backend == "numba" else kernels.kv_wepl_numpy
    centre = np.full(3, float(n_half))
    depth, wepl = march(rsp, centre, h, app.radius_mm, h, reach)
    relative = app.depth_dose(wepl) * app.inverse_square(depth) / app.inverse_square(wepl)
    relative[(depth <= 0.0) | (rsp < AIR_RSP) | (depth > reach)] = 0.0
    surface_gy = rx / (float(app.depth_dose(depth_rx)) / 100.0)
    dose = (relative / 100.0 * surface_gy).astype(np.float32)
    return KvDoseResult(dose=Volume(dose, pose @ applicator_from_voxel), applicator=app,
                        patient_from_applicator=pose, prescription_gy=rx,
                        prescription_depth_mm=depth_rx, surface_dose_gy=surface_gy,
                        treatment_time_min=surface_gy / app.surface_dose_rate_gy_per_min,
                        compute_ms=1000.0 * (time.perf_counter() - start))
