"""Independent Monte Carlo second check (ompmc, EGSnrc-derived) of an electron IORT plan.

Rooms: :mod:`.media` (CT -> media and density, from the pencil beam's HU table),
:mod:`.source` (the commissioned source model at the applicator end), :mod:`.engine`
(beam-aligned voxel phantom, transport, dose and per-voxel uncertainty as Volumes).
``ompmc`` is an optional dependency (extra ``mc``); :func:`.engine.ompmc_available` says
whether it is installed, and everything that needs it raises :class:`InputError` naming
the extra when it is not.
"""
