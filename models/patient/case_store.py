"""Case folder: an imported case saved for fast loading (no DICOM re-parsing).

Layout of a case folder::

    CASE/
      manifest.json      format, identity, grid, structures, fiducials, files + SHA-256
      ct.npy             float32 (nk, nj, ni) image
      masks.npz          one bit-packed uint8 array per structure (np.packbits)
      dose.npy           float32 dose grid (optional)

``manifest.json`` holds every affine (``patient_from_voxel``), the structure names,
colours and types, fiducials (LPS mm), DICOM identity and slice instance UIDs, an optional
plan (any JSON the planning code stores) and the SHA-256 of each data file, which
:func:`load_case` verifies (``verify=False`` skips it). Loading the default phantom takes
tens of milliseconds.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from models.base.errors import InputError
from models.patient.case import Case, Structure
from models.patient.volume import Volume

log = logging.getLogger(__name__)

FORMAT = "iort-case"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _atomic_write_bytes(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def save_case(case: Case, out_dir: str | Path, *, force: bool = False) -> Path:
    """Save a case folder (see module docstring).

    Parameters
    ----------
    case : Case
        The case (dose and plan included when set).
    out_dir : str or Path
        Folder to create; a non-empty folder is refused unless ``force`` (then the
        case files in it are replaced).
    force : bool
        Allow overwriting.

    Returns
    -------
    Path
        The case folder.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise InputError(f"--out {out}: folder is not empty; choose an empty folder or pass "
                         "--force to overwrite")
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}

    ct = np.ascontiguousarray(case.ct.array, dtype=np.float32)
    _atomic_write_bytes(out / "ct.npy", lambda h: np.save(h, ct))
    files["ct.npy"] = _sha256(out / "ct.npy")
    packed = {f"s{n}": np.packbits(s.mask.ravel()) for n, s in
              enumerate(case.structures.values())}
    _atomic_write_bytes(out / "masks.npz", lambda h: np.savez(h, **packed))
    files["masks.npz"] = _sha256(out / "masks.npz")
    dose_entry = None
    if case.dose is not None:
        dose = np.ascontiguousarray(case.dose.array, dtype=np.float32)
        _atomic_write_bytes(out / "dose.npy", lambda h: np.save(h, dose))
        files["dose.npy"] = _sha256(out / "dose.npy")
        dose_entry = {"file": "dose.npy", "shape": list(dose.shape),
                      "patient_from_voxel": case.dose.patient_from_voxel.tolist()}
    elif (out / "dose.npy").exists():
        (out / "dose.npy").unlink()

    manifest: dict[str, Any] = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "patient_id": case.patient_id, "patient_name": case.patient_name,
        "study_instance_uid": case.study_instance_uid,
        "series_instance_uid": case.series_instance_uid,
        "frame_of_reference_uid": case.frame_of_reference_uid,
        "modality": case.modality,
        "image_instance_uids": list(case.image_instance_uids),
        "dicom_attributes": dict(case.dicom_attributes),
        "ct": {"file": "ct.npy", "shape": list(ct.shape),
               "patient_from_voxel": case.ct.patient_from_voxel.tolist()},
        "structures": [{"name": s.name, "key": f"s{n}", "color_rgb": list(s.color_rgb),
                        "roi_type": s.roi_type, "voxels": s.voxel_count}
                       for n, s in enumerate(case.structures.values())],
        "fiducials_lps": {k: [float(x) for x in v] for k, v in case.fiducials_lps.items()},
        "dose": dose_entry,
        "plan": case.plan,
        "files": files,
    }
    text = json.dumps(manifest, indent=1)
    _atomic_write_bytes(out / MANIFEST, lambda h: h.write(text.encode()))
    log.info("saved case %s to %s", case.patient_id, out)
    return out


def load_case(case_dir: str | Path, *, verify: bool = True) -> Case:
    """Load a case folder written by :func:`save_case`.

    Parameters
    ----------
    case_dir : str or Path
        The folder.
    verify : bool
        Check every data file's SHA-256 against the manifest.

    Raises
    ------
    InputError
        Missing/foreign manifest, checksum mismatch, or inconsistent content (the message
        names the file).
    """
    root = Path(case_dir)
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        raise InputError(f"{root}: not a case folder (no {MANIFEST}); create one with "
                         "`iort case import` or `iort case phantom`")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{manifest_path}: unreadable manifest ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InputError(f"{manifest_path}: not an {FORMAT} manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise InputError(f"{manifest_path}: format_version {manifest.get('format_version')} "
                         f"is not supported (expected {FORMAT_VERSION})")
    try:
        return _load(root, manifest, verify)
    except InputError:
        raise
    except (KeyError, TypeError, ValueError, OSError) as exc:
        raise InputError(f"{manifest_path}: inconsistent case folder "
                         f"({type(exc).__name__}: {exc})") from exc


def _load(root: Path, manifest: dict[str, Any], verify: bool) -> Case:
    files: dict[str, str] = manifest["files"]
    for name, digest in files.items():
        path = root / name
        if not path.is_file():
            raise InputError(f"{path}: missing file listed in {MANIFEST}")
        if verify and _sha256(path) != digest:
            raise InputError(f"{path}: checksum mismatch (file changed or damaged since the "
                             "case was saved)")
    ct_entry = manifest["ct"]
    ct_array = np.load(root / ct_entry["file"], allow_pickle=False)
    if list(ct_array.shape) != list(ct_entry["shape"]):
        raise InputError(f"{root / ct_entry['file']}: shape {ct_array.shape} differs from "
                         f"manifest {ct_entry['shape']}")
    ct = Volume(ct_array, np.asarray(ct_entry["patient_from_voxel"], dtype=np.float64))
    structures = {}
    count = int(np.prod(ct.shape))
    with np.load(root / "masks.npz", allow_pickle=False) as packed:
        for entry in manifest["structures"]:
            bits = np.unpackbits(packed[entry["key"]], count=count)
            mask = bits.reshape(ct.shape).astype(bool)
            structures[entry["name"]] = Structure(entry["name"], mask,
                                                  tuple(entry["color_rgb"]), entry["roi_type"])
    dose = None
    if manifest.get("dose"):
        entry = manifest["dose"]
        dose = Volume(np.load(root / entry["file"], allow_pickle=False),
                      np.asarray(entry["patient_from_voxel"], dtype=np.float64))
    return Case(ct=ct, structures=structures,
                fiducials_lps={k: np.asarray(v, dtype=np.float64)
                               for k, v in manifest["fiducials_lps"].items()},
                patient_id=manifest["patient_id"], patient_name=manifest["patient_name"],
                study_instance_uid=manifest["study_instance_uid"],
                series_instance_uid=manifest["series_instance_uid"],
                frame_of_reference_uid=manifest["frame_of_reference_uid"],
                modality=manifest["modality"],
                image_instance_uids=list(manifest["image_instance_uids"]),
                dicom_attributes=dict(manifest["dicom_attributes"]),
                dose=dose, plan=manifest.get("plan"))
