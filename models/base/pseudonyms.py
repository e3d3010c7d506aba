"""Keyed pseudonyms: the site key and the one rule that turns an identifier into a pseudonym.

A pseudonym is the HMAC-SHA256 (RFC 2104) of the identifier under a secret *site key*,
never a plain hash: a plain SHA-256 of a medical record number is reversed by hashing a
list of MRNs, a keyed one is not without the key. The same key always gives the same
pseudonym (exports and session logs of one patient still group together); another key
gives unrelated ones.

The site key is 32 random bytes kept in a key file, owner-only (0600; refused when
others may read it, as ssh refuses a private key). Which file: an explicit path
(``--site-key FILE``), else the environment variable :data:`SITE_KEY_ENV`, else
``$XDG_CONFIG_HOME/iort/site-key`` (``~/.config/iort/site-key``). It is created on first
use. Whoever holds the key can re-identify (by recomputing the pseudonyms of known
patients): keep it like a password, back it up, do not share it with the data.

Examples
--------
>>> key = SiteKey(b"k" * 32)
>>> key.pseudonym("MRN-0001") == key.pseudonym("MRN-0001")
True
>>> key.pseudonym("MRN-0001") == SiteKey(b"j" * 32).pseudonym("MRN-0001")
False
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from models.base.errors import InputError
from models.base.files import make_private_folders, private_file

#: Environment variable naming the site key file.
SITE_KEY_ENV = "IORT_SITE_KEY"
#: First word of a key file (format and version).
_KEY_HEADER = "iort-site-key-v1"
_KEY_BYTES = 32


def default_key_path() -> Path:
    """The key file when none is named: ``$XDG_CONFIG_HOME/iort/site-key``.

    ``~/.config`` stands in for ``XDG_CONFIG_HOME`` when it is unset, empty or relative.
    """
    config_home = os.environ.get("XDG_CONFIG_HOME", "")
    root = Path(config_home) if os.path.isabs(config_home) else Path.home() / ".config"
    return root / "iort" / "site-key"


def key_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The key file to use: ``path``, else ``$IORT_SITE_KEY``, else :func:`default_key_path`."""
    if path is not None:
        return Path(path)
    env = os.environ.get(SITE_KEY_ENV, "")
    return Path(env) if env else default_key_path()


@dataclass(frozen=True)
class SiteKey:
    """A secret key and the pseudonyms derived from it.

    Attributes
    ----------
    secret : bytes
        At least 16 bytes (32 when generated).
    path : Path or None
        The key file it came from.
    """

    secret: bytes = field(repr=False)
    path: Path | None = None

    def __post_init__(self) -> None:
        if len(self.secret) < 16:
            raise InputError("site key: too short (need at least 16 bytes)")

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None, *,
             create: bool = True) -> SiteKey:
        """Read the key file (see :func:`key_path`), creating it owner-only if missing.

        Raises
        ------
        InputError
            The file is readable by group or others, unreadable, or not a key file (one
            line naming it and what to do).
        """
        where = key_path(path)
        if not where.exists():
            if not create:
                raise InputError(f"site key {where}: no such file; give the key file that "
                                 "made the earlier pseudonyms")
            return cls._create(where)
        try:
            mode = where.stat().st_mode & 0o777
            text = where.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"site key {where}: cannot read ({exc}); give a readable key "
                             "file") from exc
        if mode & 0o077:
            raise InputError(f"site key {where}: readable by others (mode {mode:o}); make it "
                             f"owner-only with `chmod 600 {where}`")
        words = text.split()
        if len(words) != 2 or words[0] != _KEY_HEADER:
            raise InputError(f"site key {where}: not an iort site key file (expected "
                             f"'{_KEY_HEADER} <64 hex digits>'); give the right file")
        try:
            secret = bytes.fromhex(words[1])
        except ValueError:
            raise InputError(f"site key {where}: the key is not hexadecimal; give the right "
                             "file") from None
        return cls(secret, where)

    @classmethod
    def _create(cls, where: Path) -> SiteKey:
        """A new random key, written owner-only without ever replacing an existing file."""
        try:
            make_private_folders(where.parent)
            staging = where.with_name(f".{where.name}.new-{os.getpid()}")
            staging.unlink(missing_ok=True)
            secret = secrets.token_bytes(_KEY_BYTES)
            private_file(staging, exclusive=True)
            with staging.open("w", encoding="ascii") as handle:
                handle.write(f"{_KEY_HEADER} {secret.hex()}\n")
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(staging, where)   # never replaces a key made meanwhile
            except FileExistsError:
                return cls.load(where, create=False)
            finally:
                staging.unlink(missing_ok=True)
        except OSError as exc:
            raise InputError(f"site key {where}: cannot create ({exc.strerror or exc}); "
                             f"name a writable key file with --site-key or ${SITE_KEY_ENV}"
                             ) from exc
        return cls(secret, where)

    def digest(self, purpose: str, value: str) -> bytes:
        """HMAC-SHA256 of ``value`` under the key, separated by ``purpose`` (32 bytes).

        Different purposes (``"patient-id"``, ``"uid"``, ``"date-offset"``) give unrelated
        outputs for the same value.
        """
        message = purpose.encode("utf-8") + b"\x00" + value.encode("utf-8")
        return hmac.new(self.secret, message, hashlib.sha256).digest()

    def pseudonym(self, identifier: str, *, prefix: str = "ANON-", length: int = 16) -> str:
        """The pseudonym of a patient identifier: ``prefix`` + ``length`` hex digits."""
        return prefix + self.digest("patient-id", identifier).hex()[:length]
