"""Hostile and broken archives and downloads, end to end (cases 6-8 of docs/bad-input.md).

Each archive is fed to the fetch stage as the workflow gives it (``fetch_source`` with a ``path``
or ``url`` source, then the ingest stage on what came out), and a few through Snakemake itself.
The outcome is always a clear error naming the archive (and member), with nothing half-extracted
and nothing written outside the target folder; or, for an interrupted download, a resume.
The HTTP server listens on 127.0.0.1 only.
"""

from __future__ import annotations

import copy
import hashlib
import http.server
import io
import os
import re
import signal
import stat
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from karyosr.dataset import ingest
from karyosr.io import shards
from karyosr.io.download import FetchError
from karyosr.io.fetch import fetch_source
from workflow_helpers import TINY_CONFIG, snakemake, write_config

EXTENSIONS = [".tif", ".tiff", ".png", ".bmp", ".jpg", ".jpeg"]
LAYOUT = {"type": "class_folders", "subdir": "cells", "extensions": EXTENSIONS, "group_regex": "_(?P<group>[^_]+)$"}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _png(seed: int) -> bytes:
    image = np.full((40, 30), 220, np.uint8)
    image[8 : 30 + seed % 5, 10:18] = 70
    ok, buf = cv2.imencode(".png", image)
    assert ok
    return buf.tobytes()


# A tiny class_folders dataset inside a top folder "cells", as archives usually come.
DATASET = {f"cells/{label}/img{i}_cell{i % 2}.png": _png(i) for i, label in enumerate(["1", "2", "X", "Y"])}


def make_zip(path: Path, files=DATASET, extra=()) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        for info, data in extra:
            zf.writestr(info, data)
    return path


def make_tar(path: Path, files=DATASET, extra=(), mode="w:gz") -> Path:
    with tarfile.open(path, mode) as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for info, data in extra:
            if data is not None:
                info.size = len(data)
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path below root (files with their bytes), to prove nothing appeared anywhere."""
    return {p.relative_to(root).as_posix(): (p.read_bytes() if p.is_file() and not p.is_symlink() else None)
            for p in root.rglob("*")}


def ingest_folder(root: Path, out: Path):
    ingest.run_inventory(root, "arch", LAYOUT, 1, out / "inventory.parquet")
    ingest.run(root, out / "inventory.parquet", LAYOUT, 0, 1, 10**7, out / "shard.parquet", out / "rejected.parquet")
    return shards.read_shard_meta(out / "shard.parquet"), shards.read_table(out / "rejected.parquet")


def _link(name, target, kind=tarfile.SYMTYPE):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def _zip_info(name, mode=None):
    info = zipfile.ZipInfo(name)
    if mode is not None:
        info.external_attr = mode << 16
    return info


# --------------------------------------------------------------------------- case 6: truncated archives


@pytest.mark.parametrize("name", ["scans.zip", "scans.tar.gz", "scans.tgz", "scans.tar.bz2", "scans.tar"])
@pytest.mark.parametrize("cut", ["half", "tail"])
def test_truncated_archive_is_a_clear_error_and_leaves_nothing(tmp_path, name, cut):
    """Cut in half, or just before its last non-zero byte (losing the end of the content: a zip's
    central directory end, a gzip/bz2 trailer, a tar's last data byte and its end marker; a plain
    tar's trailing zero padding alone is no loss)."""
    noise = {"cells/1/noise_cell9.png": np.random.default_rng(0).bytes(40_000)}  # something to cut into
    whole = tmp_path / "whole" / name
    whole.parent.mkdir()
    mode = {"scans.tar": "w", "scans.tar.bz2": "w:bz2"}.get(name, "w:gz")
    maker = make_zip if name.endswith(".zip") else (lambda p, files: make_tar(p, files, mode=mode))
    data = maker(whole, {**DATASET, **noise}).read_bytes()
    archive = tmp_path / "in" / name
    archive.parent.mkdir()
    end = len(data) // 2 if cut == "half" else len(data.rstrip(b"\0")) - 1
    archive.write_bytes(data[:end])
    raw = tmp_path / "results" / "raw" / "scans"
    with pytest.raises(FetchError) as info:
        fetch_source({"type": "path", "path": str(archive)}, raw, tmp_path / "cache")
    message = str(info.value)
    assert str(archive) in message and "truncated or corrupt archive" in message
    assert "download it again" in message
    assert not raw.exists()
    assert list((tmp_path / "results" / "raw").iterdir()) == []  # no .scans.part-* folder either


@pytest.mark.parametrize("kind", ["zip-crc", "tar.gz-crc"])
def test_corrupt_member_data_is_a_clear_error(tmp_path, kind):
    """A bit flip inside a member (not a truncation): the zip CRC or the gzip trailer catches it,
    even after some members were already unpacked into the temporary folder."""
    if kind == "zip-crc":
        archive = tmp_path / "scans.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
            for name, data in DATASET.items():
                zf.writestr(name, data)
        data = bytearray(archive.read_bytes())
        data[len(data) // 2] ^= 0xFF
    else:
        archive = make_tar(tmp_path / "scans.tar.gz")
        data = bytearray(archive.read_bytes())
        data[-6] ^= 0xFF  # the gzip CRC32 of the uncompressed data
    archive.write_bytes(bytes(data))
    raw = tmp_path / "raw" / "scans"
    with pytest.raises(FetchError, match="truncated or corrupt archive") as info:
        fetch_source({"type": "path", "path": str(archive)}, raw, tmp_path / "cache")
    assert str(archive) in str(info.value)
    assert not (tmp_path / "raw").exists() or list((tmp_path / "raw").iterdir()) == []


def test_truncated_archive_keeps_the_previous_good_extraction(tmp_path):
    """A rerun with a broken archive never half-replaces what an earlier run unpacked."""
    good = make_zip(tmp_path / "scans.zip")
    raw = tmp_path / "raw" / "scans"
    fetch_source({"type": "path", "path": str(good)}, raw, tmp_path / "cache")
    before = snapshot(raw)
    good.write_bytes(good.read_bytes()[:-100])
    with pytest.raises(FetchError, match="truncated or corrupt"):
        fetch_source({"type": "path", "path": str(good)}, raw, tmp_path / "cache")
    assert snapshot(raw) == before
    assert sorted(p.name for p in raw.parent.iterdir()) == ["scans"]


def test_good_archive_goes_through_fetch_and_ingest(tmp_path):
    """The reference for the cases above: the same archive, whole, ingests all four images."""
    for archive in (make_zip(tmp_path / "scans.zip"), make_tar(tmp_path / "scans.tar.gz")):
        raw = fetch_source({"type": "path", "path": str(archive)}, tmp_path / "raw" / archive.name, tmp_path / "c")
        meta, rejected = ingest_folder(raw, tmp_path / f"out-{archive.name}")
        assert len(meta) == 4 and rejected.empty


# --------------------------------------------------------------------------- case 7: traversal and links


def _evil_archives(outside: Path) -> dict[str, tuple]:
    """name -> (maker, extra members, member name the error must quote)."""
    return {
        "zip-dotdot": (make_zip, [(_zip_info("cells/../../evil.png"), b"x")], "cells/../../evil.png"),
        "zip-dotdot-backslash": (make_zip, [(_zip_info("..\\..\\evil.png"), b"x")], "..\\\\..\\\\evil.png"),
        "zip-absolute": (make_zip, [(_zip_info(str(outside / "evil.png")), b"x")], str(outside / "evil.png")),
        "zip-symlink": (make_zip, [(_zip_info("cells/1/link_cell0.png", stat.S_IFLNK | 0o777), str(outside).encode())],
                        "cells/1/link_cell0.png"),
        "tar-dotdot": (make_tar, [(tarfile.TarInfo("../evil.png"), b"x")], "../evil.png"),
        "tar-absolute": (make_tar, [(tarfile.TarInfo(str(outside / "evil.png")), b"x")], str(outside / "evil.png")),
        "tar-symlink-out": (make_tar, [(_link("cells/1/link_cell0.png", str(outside / "secret.png")), None)],
                            "cells/1/link_cell0.png"),
        "tar-symlink-dir-then-file": (make_tar, [(_link("cells/escape", "../../outside"), None),
                                                 (tarfile.TarInfo("cells/escape/evil.png"), b"x")], "cells/escape"),
        "tar-hardlink": (make_tar, [(_link("cells/1/hard_cell0.png", str(outside / "secret.png"), tarfile.LNKTYPE),
                                     None)], "cells/1/hard_cell0.png"),
    }


EVIL = list(_evil_archives(Path("/x")))


@pytest.mark.parametrize("case", EVIL)
def test_hostile_member_is_refused_and_nothing_is_written(tmp_path, case):
    """Zip-slip, tar traversal, absolute names and links (out of the folder) are refused before
    anything is unpacked: the whole tree below tmp_path is unchanged, no target folder appears."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.png").write_bytes(b"do not touch")
    maker, extra, member = _evil_archives(outside)[case]
    ext = ".zip" if case.startswith("zip") else ".tar.gz"
    work = tmp_path / "work"
    work.mkdir()
    archive = maker(work / f"scans{ext}", extra=extra)
    before = snapshot(tmp_path)
    raw = work / "results" / "raw" / "scans"
    with pytest.raises(FetchError) as info:
        fetch_source({"type": "path", "path": str(archive)}, raw, work / "cache")
    message = str(info.value)
    assert message.startswith(f"refusing {archive}: member ")
    assert member in message or member.replace("\\\\", "\\") in message
    assert re.search(r"absolute path|points outside the target folder|is a symlink|is a link", message)
    after = snapshot(tmp_path)
    assert {k: v for k, v in after.items() if not k.startswith("work/results")} == before
    assert sorted(k for k in after if k.startswith("work/results")) == ["work/results", "work/results/raw"]
    assert (outside / "secret.png").read_bytes() == b"do not touch"


# --------------------------------------------------------------------------- cases 6-7 through Snakemake


def _broken(kind: str, folder: Path) -> Path:
    if kind == "truncated-zip":
        archive = make_zip(folder / "scans.zip")
        archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    elif kind == "truncated-tar.gz":
        archive = make_tar(folder / "scans.tar.gz")
        archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    elif kind == "tar-traversal":
        archive = make_tar(folder / "scans.tar.gz", extra=[(tarfile.TarInfo("../../evil.png"), b"x")])
    else:
        archive = make_tar(folder / "scans.tar.gz", extra=[(_link("cells/1/link_cell0.png", "/etc/passwd"), None)])
    return archive


@pytest.mark.slow
@pytest.mark.parametrize("kind, expected", [
    ("truncated-zip", "truncated or corrupt archive"),
    ("truncated-tar.gz", "truncated or corrupt archive"),
    ("tar-traversal", "member '../../evil.png' points outside the target folder"),
    ("tar-symlink", "member 'cells/1/link_cell0.png' is a link (-> '/etc/passwd')"),
], ids=["truncated-zip", "truncated-tar.gz", "tar-traversal", "tar-symlink"])
def test_workflow_fetch_fails_on_a_broken_archive(tmp_path, kind, expected):
    """The fetch rule fails with the archive and the problem on stderr; results/raw/<name> does
    not exist; no ingest job ran; nothing escaped."""
    folder = tmp_path / "incoming"
    folder.mkdir()
    archive = _broken(kind, folder)
    config = copy.deepcopy(TINY_CONFIG)
    config["dataset"] = {"name": "scans", "source": {"type": "path", "path": str(archive)},
                         "layout": {"type": "class_folders", "subdir": "cells"}}
    path = write_config(tmp_path, config)
    result = snakemake(tmp_path, "results/ingest/manifest.parquet", "--configfile", str(path), check=False)
    assert result.returncode != 0
    assert str(archive) in result.stderr and expected in result.stderr, result.stderr[-3000:]
    assert "FetchError" in result.stderr
    assert not (tmp_path / "results/raw/scans").exists()
    raw_dir = tmp_path / "results/raw"
    assert not raw_dir.exists() or not any(raw_dir.iterdir())  # no .scans.part-* folder either
    assert not (tmp_path / "results/ingest").exists()
    assert not list(tmp_path.rglob("evil.png")) and not (tmp_path.parent / "evil.png").exists()


# --------------------------------------------------------------------------- case 8: downloads


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        state = self.server
        state.ranges.append(self.headers.get("Range"))
        body = state.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start, code = 0, 200
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match and int(match.group(1)) < len(body):
            start, code = int(match.group(1)), 206
        payload = body[start:]
        self.send_response(code)
        self.send_header("Content-Length", str(len(payload)))
        if code == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.end_headers()
        hang = state.hang_after.pop(self.path, None)
        if hang is not None:
            # Send part of the body, then hang like a stalled link until the test ends.
            self.wfile.write(payload[:hang])
            self.wfile.flush()
            state.release.wait(60)
            self.close_connection = True
            return
        drop = state.drop_after.pop(self.path, None)
        if drop is not None:
            self.wfile.write(payload[:drop])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(payload)


@pytest.fixture
def server(monkeypatch):
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("NO_PROXY", "*")
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.files, httpd.ranges, httpd.hang_after, httpd.drop_after = {}, [], {}, {}
    httpd.release = threading.Event()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield httpd
    httpd.release.set()
    httpd.shutdown()
    httpd.server_close()


def _url_source(server, path: str, digest: str, **extra) -> dict:
    return {"type": "url", "url": server.url + path, "sha256": digest, "timeout": 10, **extra}


def test_sha256_mismatch_removes_the_download_and_keeps_the_good_cached_copy(server, tmp_path):
    good = make_tar(tmp_path / "good.tar.gz").read_bytes()
    server.files["/scans.tar.gz"] = good
    raw, cache = tmp_path / "results/raw/scans", tmp_path / "resources/downloads"
    fetch_source(_url_source(server, "/scans.tar.gz", sha(good)), raw, cache)
    unpacked = snapshot(raw)

    # The server now sends something else, and the config names a hash that fits neither.
    tampered = make_tar(tmp_path / "bad.tar.gz", {**DATASET, "cells/1/extra_cell0.png": b"junk"}).read_bytes()
    server.files["/scans.tar.gz"] = tampered
    wanted = "ab" * 32
    with pytest.raises(FetchError) as info:
        fetch_source(_url_source(server, "/scans.tar.gz", wanted), raw, cache)
    message = str(info.value)
    assert f"sha256 mismatch for {server.url}/scans.tar.gz" in message
    assert wanted in message and sha(tampered) in message and "discarded" in message
    assert sorted(p.name for p in cache.iterdir()) == ["scans.tar.gz"]  # no .part left
    assert (cache / "scans.tar.gz").read_bytes() == good  # the good cached copy is kept
    assert snapshot(raw) == unpacked  # and so is what was unpacked from it

    # Back to the right hash: the cached copy is used, with no request at all.
    requests = len(server.ranges)
    fetch_source(_url_source(server, "/scans.tar.gz", sha(good)), raw, cache)
    assert len(server.ranges) == requests and snapshot(raw) == unpacked


def test_sha256_mismatch_without_cache_leaves_nothing(server, tmp_path):
    server.files["/scans.zip"] = make_zip(tmp_path / "s.zip").read_bytes()
    raw, cache = tmp_path / "results/raw/scans", tmp_path / "cache"
    with pytest.raises(FetchError, match="sha256 mismatch"):
        fetch_source(_url_source(server, "/scans.zip", "0" * 64), raw, cache)
    assert list(cache.iterdir()) == []
    assert not raw.exists()


BIG = {**DATASET, "cells/1/big_cell0.png": np.random.default_rng(1).bytes(2_500_000)}  # over one 1 MiB read


def test_interrupted_download_resumes_on_rerun(server, tmp_path):
    """The connection drops and retries are exhausted: a clear error that says a rerun resumes;
    the rerun asks only for the missing bytes and unpacks a verified archive."""
    body = make_tar(tmp_path / "big.tar", BIG, mode="w").read_bytes()
    server.files["/scans.tar"] = body
    server.drop_after["/scans.tar"] = 1_500_000
    raw, cache = tmp_path / "raw" / "scans", tmp_path / "cache"
    source = _url_source(server, "/scans.tar", sha(body), retries=0)
    with pytest.raises(FetchError, match=r"failed after 1 attempts: .* Rerun to resume from .*scans\.tar\.part"):
        fetch_source(source, raw, cache)
    part = cache / "scans.tar.part"
    kept = part.stat().st_size
    assert 0 < kept <= 1_500_000 and not (cache / "scans.tar").exists() and not raw.exists()

    fetch_source(source, raw, cache)
    assert server.ranges[-1] == f"bytes={kept}-"
    assert (cache / "scans.tar").read_bytes() == body and not part.exists()
    assert (raw / "cells/1/big_cell0.png").read_bytes() == BIG["cells/1/big_cell0.png"]


def test_killed_download_resumes(server, tmp_path):
    """kill -9 of the fetch job in the middle of a download (a stalled link): the rerun resumes
    from the bytes already on disk."""
    body = make_tar(tmp_path / "big.tar", BIG, mode="w").read_bytes()
    server.files["/scans.tar"] = body
    server.hang_after["/scans.tar"] = 1_200_000
    raw, cache = tmp_path / "raw" / "scans", tmp_path / "cache"
    source = _url_source(server, "/scans.tar", sha(body))
    code = ("import sys; from karyosr.io.fetch import fetch_source; "
            f"fetch_source({source!r}, {str(raw)!r}, {str(cache)!r})")
    env = {**os.environ, "no_proxy": "*", "NO_PROXY": "*"}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    part = cache / "scans.tar.part"
    try:
        deadline = time.monotonic() + 30
        while not (part.exists() and part.stat().st_size >= 1024 * 1024):
            assert proc.poll() is None, "the download ended before it could be killed"
            assert time.monotonic() < deadline, "no partial download appeared"
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    kept = part.stat().st_size
    assert not (cache / "scans.tar").exists() and not raw.exists()

    fetch_source(source, raw, cache)
    assert server.ranges[-1] == f"bytes={kept}-"
    assert (cache / "scans.tar").read_bytes() == body


def test_stale_partial_download_does_not_poison_the_rerun(server, tmp_path):
    """A .part left by an interrupted download of another release under the same file name: the
    resumed bytes cannot match, and the download restarts from scratch instead of failing."""
    body = make_tar(tmp_path / "v2.tar", BIG, mode="w").read_bytes()
    server.files["/v2/scans.tar"] = body
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "scans.tar.part").write_bytes(np.random.default_rng(9).bytes(700_000))  # from v1
    raw = tmp_path / "raw" / "scans"
    fetch_source(_url_source(server, "/v2/scans.tar", sha(body)), raw, cache)
    assert (cache / "scans.tar").read_bytes() == body
    assert server.ranges == ["bytes=700000-", None]
    assert sorted(p.name for p in cache.iterdir()) == ["scans.tar"]
