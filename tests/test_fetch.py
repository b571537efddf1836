"""Tests for karyosr.io.fetch, download and archives against a local HTTP server on 127.0.0.1 only."""

from __future__ import annotations

import hashlib
import http.server
import io
import logging
import re
import stat
import tarfile
import threading
import time
import zipfile
from pathlib import Path

import pytest

from karyosr.io.archives import extract_archive
from karyosr.io.download import FetchError, download, sha256_file
from karyosr.io.fetch import fetch_source


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- local server


class _State:
    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.status: dict[str, int] = {}  # path -> HTTP error code to answer with
        # The next two act on the first request for a path only.
        self.drop_after: dict[str, int] = {}  # path -> bytes sent before dropping the connection
        self.stall: dict[str, float] = {}  # path -> seconds to wait before answering
        self.honour_range = True
        self.requests: list[str] = []
        self.ranges: list[str | None] = []
        self.lock = threading.Lock()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        state: _State = self.server.state
        with state.lock:
            state.requests.append(self.path)
            state.ranges.append(self.headers.get("Range"))
            stall = state.stall.pop(self.path, 0)
            drop = state.drop_after.pop(self.path, None)
        if stall:
            time.sleep(stall)
        if self.path in state.status:
            self.send_error(state.status[self.path])
            return
        body = state.files.get(self.path)
        if body is None:
            self.send_error(404)
            return

        start, code = 0, 200
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match and state.honour_range:
            start, code = int(match.group(1)), 206
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        payload = body[start:]
        self.send_response(code)
        self.send_header("Content-Length", str(len(payload)))
        if code == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.end_headers()
        if drop is not None:
            # Promise the whole body but close early, like a dropped connection.
            self.wfile.write(payload[:drop])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(payload)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    # A proxy from the environment must never see (or swallow) the test traffic.
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("NO_PROXY", "*")


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.state = _State()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    # A short poll interval keeps shutdown() (and so each test) fast.
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


PAYLOAD = bytes(range(256)) * 40  # 10 KiB, enough to cut in the middle


# --------------------------------------------------------------------------- download


def test_fresh_download_is_verified(server, tmp_path, caplog):
    server.state.files["/data.bin"] = PAYLOAD
    dest = tmp_path / "cache" / "data.bin"
    with caplog.at_level(logging.INFO, logger="karyosr.io.download"):
        got = download(f"{server.url}/data.bin", dest, sha(PAYLOAD), backoff=0)
    assert got == dest
    assert dest.read_bytes() == PAYLOAD
    assert sha256_file(dest) == sha(PAYLOAD)
    assert not (tmp_path / "cache" / "data.bin.part").exists()
    assert server.state.ranges == [None]
    assert any(r.name == "karyosr.io.download" for r in caplog.records)


def test_cached_copy_needs_no_request(server, tmp_path):
    dest = tmp_path / "data.bin"
    dest.write_bytes(PAYLOAD)
    assert download(f"{server.url}/data.bin", dest, sha(PAYLOAD).upper(), backoff=0) == dest
    assert server.state.requests == []


def test_interrupted_download_resumes_with_range(server, tmp_path):
    server.state.files["/data.bin"] = PAYLOAD
    server.state.drop_after["/data.bin"] = 3000
    dest = tmp_path / "data.bin"
    download(f"{server.url}/data.bin", dest, sha(PAYLOAD), retries=2, backoff=0)
    assert dest.read_bytes() == PAYLOAD
    assert server.state.ranges == [None, "bytes=3000-"]
    assert not (tmp_path / "data.bin.part").exists()


def test_leftover_part_resumes_and_server_without_range_restarts(server, tmp_path):
    server.state.files["/data.bin"] = PAYLOAD
    dest = tmp_path / "data.bin"
    (tmp_path / "data.bin.part").write_bytes(b"garbage-prefix")

    server.state.honour_range = False  # answers 200: the .part must be rewritten, not appended to
    download(f"{server.url}/data.bin", dest, sha(PAYLOAD), backoff=0)
    assert dest.read_bytes() == PAYLOAD
    assert server.state.ranges == [f"bytes={len(b'garbage-prefix')}-"]


def test_complete_part_is_used_after_416(server, tmp_path):
    # A crash between finishing the .part and the rename leaves a complete .part.
    server.state.files["/data.bin"] = PAYLOAD
    dest = tmp_path / "data.bin"
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD)
    download(f"{server.url}/data.bin", dest, sha(PAYLOAD), backoff=0)
    assert dest.read_bytes() == PAYLOAD
    assert server.state.ranges == [f"bytes={len(PAYLOAD)}-"]


def test_timeout_is_retried(server, tmp_path):
    server.state.files["/data.bin"] = PAYLOAD
    server.state.stall["/data.bin"] = 0.5
    dest = tmp_path / "data.bin"
    download(f"{server.url}/data.bin", dest, sha(PAYLOAD), timeout=0.1, backoff=0)
    assert dest.read_bytes() == PAYLOAD
    assert len(server.state.requests) == 2


def test_hash_mismatch_keeps_good_cached_file(server, tmp_path):
    old = b"earlier good release"
    new = b"the release the config now expects"
    server.state.files["/data.bin"] = b"tampered bytes"
    dest = tmp_path / "data.bin"
    dest.write_bytes(old)
    url = f"{server.url}/data.bin"

    with pytest.raises(FetchError) as err:
        download(url, dest, sha(new), backoff=0)
    message = str(err.value)
    assert url in message and sha(new) in message and sha(b"tampered bytes") in message
    assert not (tmp_path / "data.bin.part").exists()
    assert dest.read_bytes() == old


def test_404_is_a_clear_error_without_retry(server, tmp_path):
    url = f"{server.url}/missing.zip"
    with pytest.raises(FetchError, match="404") as err:
        download(url, tmp_path / "missing.zip", sha(b""), retries=3, backoff=0)
    assert url in str(err.value)
    assert len(server.state.requests) == 1
    assert not (tmp_path / "missing.zip").exists()


def test_500_is_retried_then_reported(server, tmp_path):
    server.state.status["/flaky"] = 500
    url = f"{server.url}/flaky"
    with pytest.raises(FetchError, match="500") as err:
        download(url, tmp_path / "flaky", sha(b""), retries=2, backoff=0)
    assert url in str(err.value)
    assert len(server.state.requests) == 3


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/x.zip", "http:///nohost"])
def test_only_http_urls(tmp_path, url):
    with pytest.raises(FetchError, match="http"):
        download(url, tmp_path / "x", sha(b""))


def test_sha256_is_required(tmp_path):
    with pytest.raises(FetchError, match="64 hex"):
        download("http://127.0.0.1:9/x", tmp_path / "x", "")


# --------------------------------------------------------------------------- archives

FILES = {"data/a.txt": b"alpha", "data/sub/b.bin": bytes(range(256)), "README": b"readme"}


def make_zip(path: Path, files=FILES) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def make_tar(path: Path, files=FILES, mode="w:gz", extra=()) -> Path:
    with tarfile.open(path, mode) as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for info in extra:
            tf.addfile(info)
    return path


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def assert_nothing_left(work: Path, *expected: str):
    """Only the expected entries (e.g. the archive) remain: no temp folders, no escapees."""
    assert sorted(p.name for p in work.iterdir()) == sorted(expected)


@pytest.mark.parametrize(
    "maker, name", [(make_zip, "ds.zip"), (make_tar, "ds.tar.gz"), (make_tar, "ds.tgz")]
)
def test_extract_round_trip(tmp_path, maker, name):
    archive = maker(tmp_path / name)
    target = tmp_path / "out"
    target.mkdir()
    (target / "stale.txt").write_text("from an earlier run")
    assert extract_archive(archive, target) == target
    assert tree(target) == FILES
    assert_nothing_left(tmp_path, name, "out")


def test_extract_plain_tar_and_xz(tmp_path):
    for name, mode in (("ds.tar", "w"), ("ds.tar.xz", "w:xz"), ("ds.tar.bz2", "w:bz2")):
        out = tmp_path / f"out-{name}"
        extract_archive(make_tar(tmp_path / name, mode=mode), out)
        assert tree(out) == FILES


def _zip_with_member(path: Path, name: str, data=b"x", external_attr=None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ok.txt", b"fine")
        info = zipfile.ZipInfo(name)
        if external_attr is not None:
            info.external_attr = external_attr
        zf.writestr(info, data)
    return path


@pytest.mark.parametrize("member", ["../evil", "data/../../evil", "..\\evil"])
def test_zip_slip_is_refused(tmp_path, member):
    work = tmp_path / "work"
    work.mkdir()
    archive = _zip_with_member(work / "slip.zip", member)
    with pytest.raises(FetchError) as err:
        extract_archive(archive, work / "out")
    assert "slip.zip" in str(err.value) and repr(member) in str(err.value)
    assert_nothing_left(work, "slip.zip")
    assert not (tmp_path / "evil").exists()


def test_absolute_member_is_refused(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    victim = tmp_path / "abs_evil"
    zip_archive = _zip_with_member(work / "abs.zip", str(victim))
    info = tarfile.TarInfo(str(victim))
    tar_archive = make_tar(work / "abs.tar.gz", files={}, extra=[info])
    for archive in (zip_archive, tar_archive):
        with pytest.raises(FetchError, match="absolute") as err:
            extract_archive(archive, work / "out")
        assert archive.name in str(err.value)
    assert not victim.exists()
    assert_nothing_left(work, "abs.zip", "abs.tar.gz")


def _link(name, target, kind=tarfile.SYMTYPE):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


@pytest.mark.parametrize(
    "member",
    [
        _link("data/etc", "/etc"),
        _link("data/up", "../outside"),
        _link("data/hard", "../outside", tarfile.LNKTYPE),
    ],
    ids=["symlink-etc", "symlink-up", "hardlink-up"],
)
def test_tar_links_are_refused(tmp_path, member):
    work = tmp_path / "work"
    work.mkdir()
    # A file written through the link afterwards is the classic attack.
    through = tarfile.TarInfo(member.name + "/passwd")
    archive = make_tar(work / "links.tar.gz", extra=[member, through])
    with pytest.raises(FetchError, match="link") as err:
        extract_archive(archive, work / "out")
    assert "links.tar.gz" in str(err.value) and member.name in str(err.value)
    assert_nothing_left(work, "links.tar.gz")
    assert not (tmp_path / "outside").exists()


def test_tar_fifo_is_refused(tmp_path):
    fifo = tarfile.TarInfo("data/pipe")
    fifo.type = tarfile.FIFOTYPE
    archive = make_tar(tmp_path / "fifo.tar", mode="w", extra=[fifo])
    with pytest.raises(FetchError, match="FIFO"):
        extract_archive(archive, tmp_path / "out")
    assert_nothing_left(tmp_path, "fifo.tar")


def test_zip_symlink_is_refused(tmp_path):
    archive = _zip_with_member(
        tmp_path / "link.zip", "data/etc", b"/etc", external_attr=(stat.S_IFLNK | 0o777) << 16
    )
    with pytest.raises(FetchError, match="symlink"):
        extract_archive(archive, tmp_path / "out")
    assert_nothing_left(tmp_path, "link.zip")


@pytest.mark.parametrize("name", ["big.zip", "big.tar.gz"])
def test_truncated_archive_is_reported(tmp_path, name):
    files = {"noise.bin": bytes((i * 7919) % 251 for i in range(50_000)), "tail.txt": b"end"}
    full = tmp_path / "full"
    full.mkdir()
    whole = (make_zip if name.endswith(".zip") else make_tar)(full / name, files=files).read_bytes()
    archive = tmp_path / name
    archive.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(FetchError, match="truncated or corrupt") as err:
        extract_archive(archive, tmp_path / "out")
    assert name in str(err.value)
    assert_nothing_left(tmp_path, name, "full")


def test_tar_cut_at_member_boundary_is_reported(tmp_path):
    # tarfile itself would accept this silently as a shorter archive.
    whole = make_tar(tmp_path / "full.tar", mode="w").read_bytes()
    archive = tmp_path / "cut.tar"
    archive.write_bytes(whole[: 512 * 2])  # header + data block of the first member
    with pytest.raises(FetchError, match="truncated or corrupt"):
        extract_archive(archive, tmp_path / "out")
    assert_nothing_left(tmp_path, "full.tar", "cut.tar")


def test_archive_bomb_guard(tmp_path):
    for archive in (make_zip(tmp_path / "bomb.zip"), make_tar(tmp_path / "bomb.tar.gz")):
        with pytest.raises(FetchError, match="max_total_bytes") as err:
            extract_archive(archive, tmp_path / "out", max_total_bytes=10)
        total = sum(map(len, FILES.values()))
        assert archive.name in str(err.value) and str(total) in str(err.value)
    assert_nothing_left(tmp_path, "bomb.zip", "bomb.tar.gz")


def test_unknown_archive_type(tmp_path):
    archive = tmp_path / "data.rar"
    archive.write_bytes(b"Rar!")
    with pytest.raises(FetchError, match=r"\.zip") as err:
        extract_archive(archive, tmp_path / "out")
    assert "data.rar" in str(err.value)


# --------------------------------------------------------------------------- fetch_source


def test_fetch_source_url_archive_end_to_end(server, tmp_path):
    body = make_tar(tmp_path / "src.tar.gz").read_bytes()
    server.state.files["/release/chromosomes.tar.gz"] = body
    source = {
        "type": "url",
        "url": f"{server.url}/release/chromosomes.tar.gz",
        "sha256": sha(body),
        "retries": 1,
        "timeout": 5,
    }
    out, cache = tmp_path / "raw", tmp_path / "cache"
    assert fetch_source(source, out, cache) == out
    assert tree(out) == FILES
    assert (cache / "chromosomes.tar.gz").read_bytes() == body

    # A rerun unpacks again from the cache without touching the network.
    assert fetch_source(source, out, cache) == out
    assert tree(out) == FILES
    assert len(server.state.requests) == 1


def test_fetch_source_url_single_file_is_copied(server, tmp_path):
    server.state.files["/labels.csv"] = b"id,label\n1,X\n"
    source = {"type": "url", "url": f"{server.url}/labels.csv", "sha256": sha(b"id,label\n1,X\n")}
    out = fetch_source(source, tmp_path / "raw", tmp_path / "cache")
    assert tree(out) == {"labels.csv": b"id,label\n1,X\n"}


def test_fetch_source_local_folder_is_returned_unchanged(tmp_path):
    folder = tmp_path / "dataset"
    folder.mkdir()
    (folder / "img.png").write_bytes(b"png")
    out = tmp_path / "raw"
    assert fetch_source({"type": "path", "path": str(folder)}, out, tmp_path / "cache") == folder
    assert not out.exists()


def test_fetch_source_local_archive_is_extracted(tmp_path):
    archive = make_zip(tmp_path / "ds.zip")
    out = fetch_source({"type": "path", "path": archive}, tmp_path / "raw", tmp_path / "cache")
    assert tree(out) == FILES


def test_fetch_source_missing_path(tmp_path):
    missing = tmp_path / "nowhere" / "dataset"
    with pytest.raises(FetchError, match="does not exist") as err:
        fetch_source({"type": "path", "path": str(missing)}, tmp_path / "raw", tmp_path / "cache")
    assert str(missing) in str(err.value)


def test_fetch_source_bad_config(tmp_path):
    with pytest.raises(FetchError, match="sha256"):
        source = {"type": "url", "url": "http://127.0.0.1:9/x.zip"}
        fetch_source(source, tmp_path / "o", tmp_path / "c")
    with pytest.raises(FetchError, match="'url' or 'path'"):
        fetch_source({"type": "s3"}, tmp_path / "o", tmp_path / "c")
