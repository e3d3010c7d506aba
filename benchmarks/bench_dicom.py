"""DICOM import speed against SimpleITK, and phantom mesh generation.

Keys
----
``dicom.import_s``
    Our import (scan + validate + build volume) of a 512x512x200 CT series (128x128x40
    with ``quick``) written to a temporary folder.
``dicom.import_ratio_vs_sitk``
    ``dicom.import_s`` / time of SimpleITK's ``ImageSeriesReader`` (GDCM file-name
    discovery + read) on the same folder in the same run. Goal <= 1.5.
``dicom.mesh_s``
    Surface meshes (flying edges + smoothing) of every phantom structure at the default
    grid (coarse grid with ``quick``), plus decimation to 20k triangles each.
``dicom.phantom_make_s``, ``dicom.phantom_write_s``, ``dicom.phantom_read_s``,
``dicom.case_load_s``
    Build the phantom in memory, write it as DICOM, import it back with ``read_case``, and
    load the saved case folder (same grid as the mesh timing).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import best_time_s

GROUP = "dicom"


def _write_series(folder: Path, shape: tuple[int, int, int]) -> None:
    from models.dicom.common import Identity, new_uid
    from models.dicom.image_writer import write_image_series
    from models.patient.volume import Volume

    rng = np.random.default_rng(0)
    values = rng.integers(-1024, 1500, size=shape, dtype=np.int16).astype(np.float32)
    volume = Volume.from_grid(values, spacing_mm=(0.7, 0.7, 1.25), origin_mm=(-180, -180, 0))
    identity = Identity("BENCH", "Bench^Series", new_uid("bench-study"), new_uid("bench-for"))
    write_image_series(volume, folder, identity, series_instance_uid=new_uid("bench-series"))


def _sitk_read(folder: Path) -> object:
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


def run(*, quick: bool = False) -> dict[str, float]:
    """Time series import (ours vs SimpleITK) and phantom meshing."""
    from models.dicom.reader import read_case
    from models.dicom.series import read_image_folder
    from models.dicom.writer import write_case
    from models.patient.case_store import load_case, save_case
    from models.patient.phantom import make_phantom

    shape = (40, 128, 128) if quick else (200, 512, 512)
    repeat = 2 if quick else 3
    with tempfile.TemporaryDirectory(prefix="iort-bench-dicom-") as tmp:
        folder = Path(tmp)
        _write_series(folder, shape)
        read_image_folder(folder)  # warm the file cache for both readers
        _sitk_read(folder)
        ours = best_time_s(lambda: read_image_folder(folder), repeat=repeat)
        theirs = best_time_s(lambda: _sitk_read(folder), repeat=repeat)

    spacing = (3.0, 3.0, 4.0) if quick else (1.5, 1.5, 2.5)
    times: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="iort-bench-phantom-") as tmp:
        start = time.perf_counter()
        case = make_phantom(spacing_mm=spacing)
        times["dicom.phantom_make_s"] = time.perf_counter() - start
        start = time.perf_counter()
        write_case(case, Path(tmp) / "dicom")
        times["dicom.phantom_write_s"] = time.perf_counter() - start
        start = time.perf_counter()
        imported = read_case(Path(tmp) / "dicom")
        times["dicom.phantom_read_s"] = time.perf_counter() - start
        save_case(imported, Path(tmp) / "case")
        times["dicom.case_load_s"] = best_time_s(lambda: load_case(Path(tmp) / "case"),
                                                 repeat=repeat)
    start = time.perf_counter()
    for name in case.structures:
        case.mesh(name)
        case.mesh(name, max_triangles=20_000)
    times["dicom.mesh_s"] = time.perf_counter() - start
    return {"dicom.import_s": ours, "dicom.import_ratio_vs_sitk": ours / theirs, **times}
