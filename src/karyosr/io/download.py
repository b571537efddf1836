"""Verified, resumable downloads: a file fetched over HTTP(S), checked against its sha256.

Only the standard library is used so that the fetch stage runs before any heavy
dependency is importable (e.g. on a login node without the conda env).
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

__all__ = [
    "FetchError",
    "sha256_file",
    "download",
]

log = logging.getLogger(__name__)

_CHUNK = 1024 * 1024
_PROGRESS_EVERY_S = 5.0


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
