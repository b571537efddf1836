"""Fetch stage: the folder that holds a raw dataset, downloaded (verified, resumable; see
karyosr.io.download) or given as a path, and unpacked safely (karyosr.io.archives).

Only the standard library is used so that this stage runs before any heavy
dependency is importable (e.g. on a login node without the conda env).
"""

from __future__ import annotations

import os
import posixpath
import shutil
import urllib.parse
from pathlib import Path

from karyosr.io.archives import _into_target, extract_archive, is_archive
from karyosr.io.download import FetchError, _check_url, download

__all__ = ["fetch_source"]


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
