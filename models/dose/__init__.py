"""Dose engines: electron pencil beam and kV spherical kernels (GPU-free).

* :mod:`.electron` — electron pencil beam in a beam-aligned grid (`compute_electron_dose`);
* :mod:`.engine` — `ElectronDoseEngine`: reuse and rescale between calls, warm-up;
* :mod:`.kv` — kV spherical applicator along water-equivalent rays;
* :mod:`.water` — the same model on a water phantom (depth curves, output factors);
* :mod:`.kernels`, :mod:`.materials`, :mod:`.scattering` — what they build on.

Import from the module that holds a name (``from models.dose.electron import ...``).
"""
