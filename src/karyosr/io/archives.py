"""Safe unpacking of dataset archives: links, device files, absolute or escaping paths and
oversized contents are refused, and the target folder is swapped in only when complete.

Only the standard library is used (see karyosr.io.download).
"""

from __future__ import annotations

import gzip
import logging
import os
import posixpath
import re
import secrets
import shutil
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path

from karyosr.io.download import _CHUNK, FetchError

try:  # Python can be built without lzma; .tar.xz then simply fails as corrupt/unsupported.
    import lzma

    _LZMA_ERRORS: tuple[type[BaseException], ...] = (lzma.LZMAError,)
except ImportError:  # pragma: no cover
    _LZMA_ERRORS = ()

__all__ = [
    "SUPPORTED_ARCHIVES",
    "DEFAULT_MAX_TOTAL_BYTES",
    "is_archive",
    "extract_archive",
]

log = logging.getLogger(__name__)

DEFAULT_MAX_TOTAL_BYTES = 20 * 1024**3

# Longest suffix first so that ".tar.gz" wins over a hypothetical ".gz".
_ARCHIVE_MODES = {
    ".tar.gz": "r:gz",
    ".tar.bz2": "r:bz2",
    ".tar.xz": "r:xz",
    ".tgz": "r:gz",
    ".tbz2": "r:bz2",
    ".txz": "r:xz",
    ".tar": "r:",
    ".zip": "zip",
}
SUPPORTED_ARCHIVES = tuple(_ARCHIVE_MODES)


def _archive_mode(path: str | os.PathLike) -> str | None:
    name = Path(path).name.lower()
    for suffix, mode in _ARCHIVE_MODES.items():
        if name.endswith(suffix):
            return mode
    return None


def is_archive(path: str | os.PathLike) -> bool:
    """True when extract_archive knows the file's extension."""
    return _archive_mode(path) is not None


def _is_corruption(exc: BaseException) -> bool:
    known = (zipfile.BadZipFile, tarfile.ReadError, EOFError, zlib.error, gzip.BadGzipFile)
    if isinstance(exc, known + _LZMA_ERRORS):
        return True
    # Decompressors (bz2) raise OSError without errno; disk errors always carry one.
    return isinstance(exc, OSError) and exc.errno is None


def _check_member_name(archive: Path, name: str) -> None:
    # Backslashes count as separators so that Windows-made archives cannot sneak
    # "..\\" past the check either.
    normal = name.replace("\\", "/")
    if normal.startswith("/") or re.match(r"[A-Za-z]:", normal):
        raise FetchError(f"refusing {archive}: member {name!r} has an absolute path")
    resolved = posixpath.normpath(normal)
    if resolved == ".." or resolved.startswith("../"):
        raise FetchError(f"refusing {archive}: member {name!r} points outside the target folder")


def _check_total(archive: Path, total: int, max_total_bytes: int) -> None:
    if total > max_total_bytes:
        raise FetchError(
            f"refusing {archive}: it unpacks to {total} bytes, more than the limit of "
            f"{max_total_bytes} bytes (max_total_bytes); raise the limit if this is expected"
        )


def _extract_zip(archive: Path, into: Path, max_total_bytes: int) -> None:
    with zipfile.ZipFile(archive) as zf:
        members = zf.infolist()
        for info in members:
            _check_member_name(archive, info.filename)
            kind = stat.S_IFMT(info.external_attr >> 16)
            if kind == stat.S_IFLNK:
                raise FetchError(f"refusing {archive}: member {info.filename!r} is a symlink")
            if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
                raise FetchError(f"refusing {archive}: member {info.filename!r} is a special file")
            if info.flag_bits & 0x1:
                raise FetchError(f"cannot unpack {archive}: member {info.filename!r} is encrypted")
        # zipfile never yields more than the declared file_size, so the sum is a hard bound.
        _check_total(archive, sum(info.file_size for info in members), max_total_bytes)
        for info in members:
            zf.extract(info, into)


def _require_tar_end(archive: Path, tf: tarfile.TarFile) -> None:
    # tarfile treats a truncated or garbled header after the first member as a
    # normal end of archive, so check for the end-of-archive zero block ourselves.
    tf.fileobj.seek(tf.offset)
    if tf.fileobj.read(tarfile.BLOCKSIZE) != tarfile.NUL * tarfile.BLOCKSIZE:
        raise tarfile.ReadError("no end-of-archive marker after the last member")
    # Reading to the end makes gzip/bz2/xz verify their trailing checksum.
    while tf.fileobj.read(_CHUNK):
        pass


def _extract_tar(archive: Path, mode: str, into: Path, max_total_bytes: int) -> None:
    with tarfile.open(archive, mode) as tf:
        members = tf.getmembers()
        for member in members:
            _check_member_name(archive, member.name)
            if member.issym() or member.islnk():
                raise FetchError(
                    f"refusing {archive}: member {member.name!r} is a link "
                    f"(-> {member.linkname!r}); links are not allowed in dataset archives"
                )
            if not (member.isfile() or member.isdir()):
                raise FetchError(
                    f"refusing {archive}: member {member.name!r} is a device file or FIFO"
                )
        _check_total(archive, sum(m.size for m in members if m.isfile()), max_total_bytes)
        _require_tar_end(archive, tf)
        if hasattr(tarfile, "data_filter"):
            # Second line of defence in case our own checks miss a trick.
            tf.extractall(into, members=members, filter="data")
        else:  # pragma: no cover - Python < 3.11.4
            tf.extractall(into, members=members)


def _new_sibling(target: Path, tag: str) -> Path:
    # mkdir (not mkdtemp) so the folder gets the usual umask permissions rather
    # than 0700, because it becomes the final target folder.
    path = target.parent / f".{target.name}.{tag}-{secrets.token_hex(4)}"
    path.mkdir()
    return path


def _replace_dir(new: Path, target: Path) -> None:
    """Move `new` onto `target`; the old target is kept until the new one is in place."""
    if not (target.exists() or target.is_symlink()):
        os.replace(new, target)
        return
    trash = _new_sibling(target, "old")
    os.replace(target, trash / "old")
    try:
        os.replace(new, target)
    except BaseException:
        os.replace(trash / "old", target)
        shutil.rmtree(trash, ignore_errors=True)
        raise
    shutil.rmtree(trash, ignore_errors=True)


def _into_target(target_dir: str | os.PathLike, fill) -> Path:
    """Build the folder in a temporary sibling via fill(tmp), then swap it in."""
    target = Path(target_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_sibling(target, "part")
    try:
        fill(tmp)
        _replace_dir(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def extract_archive(
    archive: str | os.PathLike,
    target_dir: str | os.PathLike,
    *,
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
) -> Path:
    """Unpack a .zip, .tar, .tar.gz/.tgz, .tar.bz2/.tbz2 or .tar.xz/.txz into target_dir safely.

    target_dir is replaced as a whole (an existing one is removed) and only
    once everything unpacked. Archives with links, device files, absolute or
    escaping paths, or more than max_total_bytes of content are refused.
    """
    archive = Path(archive)
    mode = _archive_mode(archive)
    if mode is None:
        raise FetchError(
            f"cannot unpack {archive}: unknown archive type; "
            f"supported: {', '.join(SUPPORTED_ARCHIVES)}"
        )
    if not archive.is_file():
        raise FetchError(f"cannot unpack {archive}: file not found")

    def fill(tmp: Path) -> None:
        try:
            if mode == "zip":
                _extract_zip(archive, tmp, max_total_bytes)
            else:
                _extract_tar(archive, mode, tmp, max_total_bytes)
        except tarfile.FilterError as exc:
            name = exc.tarinfo.name if exc.tarinfo else "?"
            raise FetchError(f"refusing {archive}: member {name!r}: {exc}") from exc
        except FetchError:
            raise
        except Exception as exc:
            if _is_corruption(exc):
                raise FetchError(
                    f"cannot unpack {archive}: truncated or corrupt archive ({exc}); "
                    "delete it and download it again"
                ) from exc
            raise

    log.info("unpacking %s -> %s", archive, target_dir)
    return _into_target(target_dir, fill)
