"""Files and folders only the service user may read: tightened when ours, refused when open."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from guide.errors import ConfigError

FOLDER_MODE = 0o700
FILE_MODE = 0o600
# Secret files are read whole; nothing a key or password needs comes close to this.
MAX_SECRET_BYTES = 64 * 1024


def private_folder(path: Path, key: str) -> None:
    """Create `path` 0700, or tighten it to 0700 if ours; ConfigError naming `key` otherwise."""
    path.mkdir(parents=True, exist_ok=True, mode=FOLDER_MODE)
    _tighten(path, FOLDER_MODE, key, "folder")


def private_file(path: Path, key: str) -> None:
    """Tighten an existing file to 0600 if ours; ConfigError naming `key` if others can read it."""
    _tighten(path, FILE_MODE, key, "file")


def _tighten(path: Path, mode: int, key: str, what: str) -> None:
    # The database, outbox and keys hold data about people at risk and the power to forge
    # their links: nobody but the service user may look in.
    info = path.stat()
    current = stat.S_IMODE(info.st_mode)
    if current & 0o077 == 0:
        return
    if info.st_uid == os.geteuid():
        os.chmod(path, current & ~0o077 | (mode & 0o700))
        return
    # Not ours to change. A group the service user shares (root:guide 0640) is a deliberate
    # choice; a file every user can read or anyone can write is not.
    if current & 0o007 or current & 0o020:
        raise ConfigError(
            key,
            f"{path} is a {what} other users can open (mode {current:04o}) and belongs to "
            f"another user: make it mode {mode:04o} or owned by the service user",
        )


def read_secret(path: Path, key: str, source: str | None = None) -> str:
    """The text of a secret file (tightened first), stripped; ConfigError naming `key`."""
    try:
        if path.is_dir():
            raise ConfigError(key, f"cannot read {path}: a folder, not a file", source=source)
        private_file(path, key)
        with path.open("rb") as handle:
            data = handle.read(MAX_SECRET_BYTES + 1)
    except OSError as err:
        message = f"cannot read {path}: {err.strerror or err}"
        raise ConfigError(key, message, source=source) from err
    except ConfigError as err:
        raise ConfigError(key, err.message, source=source) from None
    if len(data) > MAX_SECRET_BYTES:
        message = f"{path} is larger than {MAX_SECRET_BYTES // 1024} KB"
        raise ConfigError(key, message, source=source)
    try:
        text = data.decode("utf-8").strip()
    except UnicodeDecodeError as err:
        raise ConfigError(key, f"{path} is not UTF-8 text", source=source) from err
    if not text:
        raise ConfigError(key, f"{path} is empty", source=source)
    return text
