"""Fetch stage: download a dataset (verified, resumable) and unpack it safely.

Only the standard library is used so that this stage runs before any heavy
dependency is importable (e.g. on a login node without the conda env).
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import logging
import os
import posixpath
import re
import secrets
import shutil
import stat
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from pathlib import Path

try:  # Python can be built without lzma; .tar.xz then simply fails as corrupt/unsupported.
    import lzma

    _LZMA_ERRORS: tuple[type[BaseException], ...] = (lzma.LZMAError,)
except ImportError:  # pragma: no cover
    _LZMA_ERRORS = ()

__all__ = [
    "FetchError",
    "SUPPORTED_ARCHIVES",
    "DEFAULT_MAX_TOTAL_BYTES",
    "sha256_file",
    "download",
    "is_archive",
    "extract_archive",
    "fetch_source",
]

log = logging.getLogger("karyosr.io.fetch")

DEFAULT_MAX_TOTAL_BYTES = 20 * 1024**3
_CHUNK = 1024 * 1024
_PROGRESS_EVERY_S = 5.0

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


class FetchError(Exception):
    """A user-facing failure of the fetch stage; the message says what to fix."""


class _TransientError(Exception):
    """A failure worth retrying (network hiccup, server overload)."""


class _RangeNotSatisfiable(Exception):
    """The server says our .part file is already as long as (or longer than) the file."""


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------- download


def _check_url(url: str) -> None:
    parts = urllib.parse.urlsplit(url)
    # file://, ftp:// etc. would bypass the cache/resume logic and can read local files.
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise FetchError(f"unsupported URL {url!r}: expected an http:// or https:// URL")


def _normalise_sha256(sha256: str, url: str) -> str:
    value = str(sha256 or "").strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", value):
        raise FetchError(
            f"sha256 for {url} must be 64 hex digits, got {sha256!r}; "
            "compute it with `sha256sum <file>` on a trusted copy"
        )
    return value


def _content_range_start(header: str | None) -> int | None:
    match = re.fullmatch(r"\s*bytes\s+(\d+)-\d+/(\d+|\*)\s*", header or "")
    return int(match.group(1)) if match else None


def _download_once(url: str, part: Path, timeout: float) -> None:
    """One HTTP request that appends to (206) or rewrites (200) `part`."""
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "karyosr-fetch"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and offset:
            raise _RangeNotSatisfiable() from exc
        if exc.code >= 500:
            raise _TransientError(f"HTTP {exc.code} {exc.reason}") from exc
        raise FetchError(
            f"download of {url} failed with HTTP {exc.code} {exc.reason}; check the URL"
        ) from exc
    except (OSError, http.client.HTTPException) as exc:
        raise _TransientError(f"{type(exc).__name__}: {exc}") from exc

    with response:
        if response.status == 206:
            start = _content_range_start(response.headers.get("Content-Range"))
            if start != offset:
                # Appending a range we did not ask for would silently corrupt the file.
                part.unlink(missing_ok=True)
                raise _TransientError(
                    f"server sent range starting at {start}, expected {offset}; restarting"
                )
            mode = "ab"
        else:
            if offset:
                log.info("server ignored the resume request for %s; starting over", url)
            offset, mode = 0, "wb"

        length = response.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        total = offset + expected if expected is not None else None
        received = 0
        last_report = time.monotonic()
        with open(part, mode) as fh:
            while True:
                try:
                    chunk = response.read(_CHUNK)
                except (OSError, http.client.HTTPException) as exc:
                    raise _TransientError(f"{type(exc).__name__}: {exc}") from exc
                if not chunk:
                    break
                fh.write(chunk)
                received += len(chunk)
                if time.monotonic() - last_report >= _PROGRESS_EVERY_S:
                    last_report = time.monotonic()
                    done = offset + received
                    if total:
                        pct = 100 * done / total
                        log.info("%s: %d of %d bytes (%.0f%%)", url, done, total, pct)
                    else:
                        log.info("%s: %d bytes", url, done)

    # http.client does not raise when the peer closes early during read(n), so
    # a dropped connection only shows up as a short body.
    if expected is not None and received < expected:
        raise _TransientError(f"connection closed after {offset + received} of {total} bytes")


def _download_with_retries(url: str, part: Path, expected: str, retries: int, timeout: float,
                           backoff: float) -> None:
    failures = 0
    while True:
        try:
            _download_once(url, part, timeout)
            break
        except _RangeNotSatisfiable:
            # The .part is complete already (crash before the rename) or stale.
            if sha256_file(part) == expected:
                break
            log.warning("discarding stale partial download %s", part)
            part.unlink()
        except _TransientError as exc:
            failures += 1
            if failures > retries:
                raise FetchError(
                    f"download of {url} failed after {failures} attempts: {exc}. "
                    f"Rerun to resume from {part}, or raise 'retries'/'timeout'"
                ) from exc
            delay = backoff * 2 ** (failures - 1)
            log.warning(
                "download of %s failed (%s); retry %d of %d in %.1f s",
                url, exc, failures, retries, delay,
            )
            time.sleep(delay)


def download(
    url: str,
    dest: str | os.PathLike,
    sha256: str,
    *,
    retries: int = 3,
    timeout: float = 60.0,
    backoff: float = 1.0,
) -> Path:
    """Download url to dest, verified against sha256 (hex, required).

    A dest that already has the right hash is used as is, without any network
    access. The data goes to ``<dest>.part`` first and is resumed from there
    with an HTTP Range request after an interruption. Transient failures
    (connection errors, timeouts, HTTP 5xx) are retried ``retries`` times with
    a delay of ``backoff * 2**n`` seconds; HTTP 4xx fails at once. dest only
    ever changes by an atomic ``os.replace`` of a fully verified file.
    """
    _check_url(url)
    expected = _normalise_sha256(sha256, url)
    dest = Path(dest)
    if dest.is_file():
        if sha256_file(dest) == expected:
            log.info("using cached %s", dest)
            return dest
        log.warning("cached %s does not match the expected sha256; downloading again", dest)

    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    if part.exists():
        log.info("resuming %s from %d bytes", url, part.stat().st_size)
    else:
        log.info("downloading %s -> %s", url, dest)

    # Bytes kept from an earlier run may belong to another file (a new release under the same
    # name, or a file changed on the server); if the resumed file fails the check, one fresh
    # download from the start tells a stale prefix from a wrong sha256.
    stale_prefix = part.exists() and part.stat().st_size > 0
    while True:
        _download_with_retries(url, part, expected, retries, timeout, backoff)
        actual = sha256_file(part)
        if actual == expected:
            break
        # A resumed download can never fix a bad prefix: the next attempt starts from scratch.
        part.unlink(missing_ok=True)
        if stale_prefix:
            stale_prefix = False
            log.warning("%s: the resumed download does not match the sha256 (the partial file was stale); "
                        "downloading it again from the start", url)
            continue
        raise FetchError(
            f"sha256 mismatch for {url}: expected {expected}, got {actual}. "
            "The download was discarded; check the URL and the sha256 in the config"
        )
    os.replace(part, dest)
    log.info("downloaded %s (%d bytes, sha256 ok)", dest, dest.stat().st_size)
    return dest


# --------------------------------------------------------------------------- extraction


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


# --------------------------------------------------------------------------- sources


def _file_name_from_url(url: str) -> str:
    name = posixpath.basename(urllib.parse.unquote(urllib.parse.urlsplit(url).path))
    if name in ("", ".", ".."):
        raise FetchError(
            f"cannot derive a file name from URL {url!r}; use a URL that ends in the file name"
        )
    return name


def _setting(source: dict, key: str, default):
    # An explicit null in the config means "use the default", not 0.
    value = source.get(key)
    return default if value is None else value


def _unpack_or_copy(file: Path, out_dir: str | os.PathLike) -> Path:
    if is_archive(file):
        return extract_archive(file, out_dir)
    return _into_target(out_dir, lambda tmp: shutil.copy2(file, tmp / file.name))


def fetch_source(source: dict, out_dir: str | os.PathLike, cache_dir: str | os.PathLike) -> Path:
    """Return the folder that holds the raw dataset described by `source`.

    {"type": "url", "url": ..., "sha256": ..., "retries": 3, "timeout": 60}:
        downloaded into cache_dir/<file name from URL> (reused when the hash
        matches), then unpacked into out_dir if it is an archive, else copied
        into out_dir. Returns out_dir.
    {"type": "path", "path": ...}:
        a folder is returned unchanged (nothing is copied); an archive is
        unpacked into out_dir and a single other file copied into out_dir.
    out_dir is replaced as a whole whenever it is written.
    """
    kind = source.get("type")
    if kind == "url":
        url, sha256 = source.get("url"), source.get("sha256")
        if not url or not sha256:
            raise FetchError(
                f"a source of type 'url' needs both 'url' and 'sha256', got {source!r}"
            )
        _check_url(url)
        cached = download(
            url,
            Path(cache_dir) / _file_name_from_url(url),
            sha256,
            retries=int(_setting(source, "retries", 3)),
            timeout=float(_setting(source, "timeout", 60)),
        )
        return _unpack_or_copy(cached, out_dir)
    if kind == "path":
        if not source.get("path"):
            raise FetchError(f"a source of type 'path' needs 'path', got {source!r}")
        path = Path(source["path"]).expanduser()
        if not path.exists():
            raise FetchError(f"dataset path {path} does not exist; fix 'path' in the config")
        if path.is_dir():
            return path
        return _unpack_or_copy(path, out_dir)
    raise FetchError(f"unknown source type {kind!r}; expected 'url' or 'path'")
