"""Atomic writes (karyosr.io.atomic): outputs end with the mode the umask gives a normal file."""

from __future__ import annotations

import os

import pytest

from karyosr.io import atomic


@pytest.fixture
def umask():
    previous = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(previous)


@pytest.mark.parametrize("mask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750)])
def test_files_and_folders_get_the_umasks_mode(tmp_path, umask, mask, file_mode, dir_mode):
    umask(mask)
    atomic.write_text(tmp_path / "table.csv", "a\n1\n")
    with atomic.atomic_path(tmp_path / "data.bin") as tmp:
        tmp.write_bytes(b"x")
    with atomic.atomic_dir(tmp_path / "folder") as folder:
        (folder / "inside.txt").write_text("y")
    assert (tmp_path / "table.csv").stat().st_mode & 0o777 == file_mode
    assert (tmp_path / "data.bin").stat().st_mode & 0o777 == file_mode
    assert (tmp_path / "folder").stat().st_mode & 0o777 == dir_mode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.bin", "folder", "table.csv"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    atomic.write_text(tmp_path / "out.txt", "old")
    with pytest.raises(RuntimeError), atomic.atomic_path(tmp_path / "out.txt") as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash")
    assert (tmp_path / "out.txt").read_text() == "old" and len(list(tmp_path.iterdir())) == 1
