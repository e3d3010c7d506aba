"""Case folder: an imported case saved for fast loading (no DICOM re-parsing).

Layout of a case folder::

    CASE/
      manifest.json      format, identity, grid, structures, fiducials, files + SHA-256
      ct.npy             float32 (nk, nj, ni) image
      masks.npz          one bit-packed uint8 array per structure (np.packbits)
      dose.npy           float32 dose grid (optional)
      edits.json         intraoperative anatomy edits (optional, :func:`save_edits`)

``manifest.json`` holds every affine (``patient_from_voxel``), the structure names,
colours and types, fiducials (LPS mm), DICOM identity and slice instance UIDs, an optional
plan (any JSON the planning code stores) and the SHA-256 of each data file, which
:func:`load_case` verifies (``verify=False`` skips it). Loading the default phantom takes
tens of milliseconds.

Integrity (format version 2)
    The manifest itself is sealed: ``manifest_sha256`` is the SHA-256 of its canonical
    JSON (every other key, sorted, no whitespace, UTF-8; :func:`manifest_digest`). A CT
    origin or spacing, a fiducial, a structure's mask key, the patient ID or the plan
    edited after saving, or an entry removed from ``files``, no longer matches and the
    case is refused. Every file the case needs (``ct.npy``, ``masks.npz`` and the dose
    file when there is a dose) must be listed in ``files``, and every name must be a plain
    file name inside the folder (no ``/``, ``..`` or absolute path). The seal detects
    damage and editing; it is not a signature (whoever can write the folder can re-seal
    it).

Migration
    A version-1 case (written before the seal) still loads, with a warning each time (a
    sealed manifest whose version was edited to 1 is refused);
    :func:`seal_case` (or importing it again) rewrites it as version 2 after checking its
    data files against their checksums.

Anatomy edits
    The intraoperative edits (:class:`models.patient.edits.EditList`: retractions,
    resections, the disc) are their own file, ``edits.json``, listed in ``files`` like the
    data files: :func:`save_edits` writes it and re-seals the manifest (the CT and masks
    stay as they are: the original is never overwritten), :func:`load_edits` reads them
    back after the same seal and checksum checks as :func:`load_case`. An edits file that
    is not listed, or changed since, is refused.

Saving never destroys the previous case: the new case is written to a sibling folder
and swapped in (``--force``) by :func:`models.base.files.replacing_folder`, one atomic
exchange on Linux, so a kill at any moment leaves the old case or the new one (staging
folders left by a killed writer are removed by the next save).

Permissions
    A case holds the patient's name, ID, birth date and images: the folder is 0700 and
    every file in it 0600, whatever the umask.
"""

from __future__ import annotations

import hashlib
import json
import logging
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from models.base.errors import InputError
from models.base.files import fsync_folder, replacing_folder, write_private_bytes
from models.patient.case import Case, Structure
from models.patient.edits import EditList
from models.patient.volume import Volume

log = logging.getLogger(__name__)

FORMAT = "iort-case"
FORMAT_VERSION = 2
#: Versions still read: 1 was written before the manifest was sealed (loads with a warning).
READ_VERSIONS = (1, 2)
MANIFEST = "manifest.json"
#: Manifest key holding :func:`manifest_digest`.
DIGEST_KEY = "manifest_sha256"
#: The files a case folder may hold (a forced save replaces a folder holding only these).
#: File of the anatomy edits (see :func:`save_edits`).
EDITS_FILE = "edits.json"
CASE_FILES = (MANIFEST, "ct.npy", "masks.npz", "dose.npy", EDITS_FILE)


def manifest_digest(manifest: dict[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of ``manifest`` without its ``manifest_sha256``.

    Canonical: keys sorted, no whitespace, UTF-8, floats as Python writes them (exact).
    """
    body = {k: v for k, v in manifest.items() if k != DIGEST_KEY}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


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
    existing = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if existing and not force:
        raise InputError(f"--out {out}: folder is not empty; choose an empty folder or pass "
                         "--force to overwrite")
    foreign = [name for name in existing if name not in CASE_FILES]
    if foreign:
        raise InputError(f"--out {out}: holds files that are not part of a case "
                         f"({', '.join(foreign[:3])}); choose another folder")
    with replacing_folder(out) as staging:
        _write_case_files(case, staging)
    log.info("saved a case to %s", out)
    return out


def _write_case_files(case: Case, out: Path) -> None:
    """Write data files and the sealed manifest of ``case`` into the (new) folder ``out``."""
    files: dict[str, str] = {}

    ct = np.ascontiguousarray(case.ct.array, dtype=np.float32)
    write_private_bytes(out / "ct.npy", lambda h: np.save(h, ct))
    files["ct.npy"] = _sha256(out / "ct.npy")
    packed = {f"s{n}": np.packbits(s.mask.ravel()) for n, s in
              enumerate(case.structures.values())}
    write_private_bytes(out / "masks.npz", lambda h: np.savez(h, **packed))
    files["masks.npz"] = _sha256(out / "masks.npz")
    dose_entry = None
    if case.dose is not None:
        dose = np.ascontiguousarray(case.dose.array, dtype=np.float32)
        write_private_bytes(out / "dose.npy", lambda h: np.save(h, dose))
        files["dose.npy"] = _sha256(out / "dose.npy")
        dose_entry = {"file": "dose.npy", "shape": list(dose.shape),
                      "patient_from_voxel": case.dose.patient_from_voxel.tolist()}

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
    _write_manifest(out, manifest)


def _write_manifest(out: Path, manifest: dict[str, Any]) -> None:
    """Seal (``manifest_sha256``) and write the manifest, atomically."""
    sealed = json.loads(json.dumps(manifest))  # what a reader will parse: tuples -> lists
    sealed["format_version"] = FORMAT_VERSION
    sealed[DIGEST_KEY] = manifest_digest(sealed)
    text = json.dumps(sealed, indent=1)
    write_private_bytes(out / MANIFEST, lambda h: h.write(text.encode()))


def seal_case(case_dir: str | Path) -> Path:
    """Rewrite a version-1 case folder's manifest as version 2, sealed.

    The data files are checked against their checksums first, so only an undamaged case
    is sealed. A version-2 case is checked and left as it is.

    Raises
    ------
    InputError
        What :func:`load_case` raises for the folder.
    """
    root = Path(case_dir)
    manifest = _read_manifest(root)
    _load(root, manifest, True)
    if manifest.get("format_version") != FORMAT_VERSION:
        _write_manifest(root, manifest)
        log.info("%s: manifest sealed (format version %d)", root, FORMAT_VERSION)
    return root


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
        Missing/foreign manifest, a manifest edited since it was saved (seal mismatch), a
        file missing from ``files`` or outside the folder, checksum mismatch, or
        inconsistent content (the message names the file).
    """
    root = Path(case_dir)
    manifest = _read_manifest(root)
    if manifest.get("format_version") == 1:
        log.warning("%s: case saved before manifests were sealed: its geometry, identity "
                    "and plan are not protected against editing; import it again (or seal "
                    "it) to protect it", root)
    return _load(root, manifest, verify)


def save_edits(case_dir: str | Path, edits: EditList) -> Path:
    """Write the anatomy edits into a (sealed) case folder and re-seal its manifest.

    The case is checked first (seal and checksums, as :func:`load_case`), then every edit
    is checked against it (:meth:`EditList.apply`), so a folder never holds edits its case
    refuses. An empty list removes the file. Returns the edits file's path.

    Raises
    ------
    InputError
        What :func:`load_case` raises for the folder, a version-1 case (seal it first), or
        an edit the case refuses.
    """
    root = Path(case_dir)
    manifest = _read_manifest(root)
    if manifest.get("format_version") != FORMAT_VERSION:
        raise InputError(f"{root}: case saved before manifests were sealed; seal it "
                         "(`iort case import` again) before saving edits in it")
    case = _load(root, manifest, True)
    edits.apply(case)
    path = root / EDITS_FILE
    files = dict(manifest["files"])
    if len(edits):
        text = json.dumps({"format": "iort-edits", "edits": edits.to_json()}, indent=1)
        write_private_bytes(path, text.encode("utf-8"))
        files[EDITS_FILE] = _sha256(path)
    else:
        files.pop(EDITS_FILE, None)
    manifest["files"] = files
    _write_manifest(root, manifest)
    if not len(edits):
        path.unlink(missing_ok=True)
    fsync_folder(root)
    log.info("%s: %d anatomy edit(s) saved", root, len(edits))
    return path


def load_edits(case_dir: str | Path) -> EditList:
    """The anatomy edits of a case folder (empty when it has none); see :func:`save_edits`.

    Raises
    ------
    InputError
        A broken seal or checksum, an edits file not covered by the manifest, or an entry
        that is not a valid edit (the message names the file and entry).
    """
    root = Path(case_dir)
    manifest = _read_manifest(root)
    _check_files(root, manifest, True)
    path = root / EDITS_FILE
    if EDITS_FILE not in manifest["files"]:
        if path.exists():
            raise InputError(f"{path}: not covered by a checksum in {MANIFEST} 'files'; "
                             "the edits were not saved by iort: do not use them")
        return EditList()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise InputError(f"{path}: unreadable edits ({type(exc).__name__})") from None
    if not isinstance(data, dict) or data.get("format") != "iort-edits":
        raise InputError(f"{path}: not an iort-edits file")
    return EditList.from_json(data.get("edits"), source=str(path))


def _read_manifest(root: Path) -> dict[str, Any]:
    """The parsed manifest, its format, version and seal checked."""
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        raise InputError(f"{root}: not a case folder (no {MANIFEST}); create one with "
                         "`iort case import` or `iort case phantom`")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise InputError(f"{manifest_path}: unreadable manifest ({type(exc).__name__}); "
                         "import the case again") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InputError(f"{manifest_path}: not an {FORMAT} manifest")
    version = manifest.get("format_version")
    if version not in READ_VERSIONS or isinstance(version, bool):
        raise InputError(f"{manifest_path}: format_version {version!r} is not supported "
                         f"(expected one of {', '.join(map(str, READ_VERSIONS))})")
    if version == 1 and DIGEST_KEY in manifest:   # only version 2 was ever sealed
        raise InputError(f"{manifest_path}: a sealed manifest marked format_version 1: the "
                         "version was edited to skip the seal check; do not use it, import "
                         "the case again")
    if version >= 2 and manifest.get(DIGEST_KEY) != manifest_digest(manifest):
        what = "has no" if DIGEST_KEY not in manifest else "does not match its"
        raise InputError(f"{manifest_path}: the manifest {what} seal ({DIGEST_KEY}): it was "
                         "edited or damaged since the case was saved; do not use it, import "
                         "the case again")
    return manifest


def _load(root: Path, manifest: dict[str, Any], verify: bool) -> Case:
    manifest_path = root / MANIFEST
    try:
        _check_files(root, manifest, verify)
        return _build(root, manifest)
    except InputError:
        raise
    except (KeyError, TypeError, ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(f"{manifest_path}: inconsistent case folder "
                         f"({type(exc).__name__}: {exc}); import the case again") from exc


def _plain_name(name: Any, manifest_path: Path) -> str:
    """A file name inside the case folder, or InputError (paths outside are refused)."""
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name \
            or "\\" in name or name != Path(name).name:
        raise InputError(f"{manifest_path}: file {name!r} is not a plain file name inside "
                         "the case folder; refusing it")
    return name


def _check_files(root: Path, manifest: dict[str, Any], verify: bool) -> None:
    """Every needed file listed, inside the folder, present and (``verify``) unchanged."""
    manifest_path = root / MANIFEST
    files = manifest["files"]
    if not isinstance(files, dict):
        raise InputError(f"{manifest_path}: 'files' must map file names to SHA-256")
    needed = [manifest["ct"]["file"], "masks.npz"]
    if manifest.get("dose"):
        needed.append(manifest["dose"]["file"])
    for name in needed:
        if _plain_name(name, manifest_path) not in files:
            raise InputError(f"{root / name}: not covered by a checksum in {MANIFEST} 'files'"
                             "; the manifest was edited, import the case again")
    for name, digest in files.items():
        path = root / _plain_name(name, manifest_path)
        if not path.is_file() or path.is_symlink():
            raise InputError(f"{path}: missing file listed in {MANIFEST}")
        if verify and _sha256(path) != digest:
            raise InputError(f"{path}: checksum mismatch (file changed or damaged since the "
                             "case was saved)")


def _build(root: Path, manifest: dict[str, Any]) -> Case:
    """The Case from a checked manifest and its files."""
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
