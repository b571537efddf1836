"""Atomic file writes: a reader sees the old file or the complete new one, never a partial one.

Temporary files and folders are created with ``os.open(..., 0o666)`` / ``os.mkdir(..., 0o777)``,
not ``tempfile.mkstemp`` / ``mkdtemp`` (which make them 0600 / 0700, private to the owner): the
kernel then applies the umask (and a folder's default ACL) as for any file a program creates, so
an output ends as 0644 under umask 0022, readable by the group and others like the rest of the
results. Letting the kernel apply it means the umask is never read, since reading it means
setting it, and another thread could create files under the wrong umask meanwhile.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from pathlib import Path
from typing import Callable, Iterator

_NAME_ATTEMPTS = 100


def _create_unique(folder: Path, prefix: str, create: Callable[[Path], None]) -> Path:
    """``create`` a new file system entry named ``prefix`` + 8 random hex digits in ``folder`` (it
    raises FileExistsError for a name that is taken: another random name is tried)."""
    for _ in range(_NAME_ATTEMPTS):
        candidate = folder / f"{prefix}{secrets.token_hex(4)}"
        try:
            create(candidate)
            return candidate
        except FileExistsError:
            continue
    raise FileExistsError(f"{folder}: no free temporary name {prefix}* after {_NAME_ATTEMPTS} attempts")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` when the block succeeds.

    The temporary file lives in the same folder so the final ``os.replace`` is a rename on one
    file system, which POSIX makes atomic; a crash leaves only a ``.tmp-*`` file that no rule
    declares, never a truncated output.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_unique(target.parent, f".{target.name}.tmp-",
                         lambda name: os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)))
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; it replaces ``path`` (and what was there) when the
    block succeeds, so a generated folder appears complete or not at all. On failure it is removed."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_unique(target.parent, f"{target.name}.tmp-", lambda name: os.mkdir(name, 0o777))
    try:
        yield tmp
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))
