"""Collecting a workspace's output files, and removing it, whatever a program left
there (issue 9: nothing it leaves may lose the task's result)."""

from __future__ import annotations

import hashlib
import os
import socket
import stat

import pytest
from job_runner.outputs import SkipFile, collect_outputs, remove_tree

from tests.conftest import output_limits


@pytest.fixture
def workspace(tmp_path):
    path = tmp_path / "workspace"
    path.mkdir()
    yield path
    # pytest's own clean-up (shutil.rmtree) cannot remove 1,100 nested directories.
    remove_tree(path)


def nest(root, depth: int) -> None:
    """depth nested directories named d, holding one file, without long paths."""
    fd = os.open(root, os.O_DIRECTORY)
    for _ in range(depth):
        os.mkdir("d", dir_fd=fd)
        below = os.open("d", os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = below
    os.close(os.open("deep.txt", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd))
    os.close(fd)


def test_large_and_binary_files_are_listed_with_their_hash_not_inline(workspace):
    (workspace / "big.txt").write_text("a" * 9000)
    (workspace / "blob.bin").write_bytes(b"\xff\xfe\x00")

    files = collect_outputs(workspace, output_limits())["files"]

    assert files == [
        {"path": "big.txt", "size": 9000, "sha256": hashlib.sha256(b"a" * 9000).hexdigest(),
         "content": None},
        {"path": "blob.bin", "size": 3, "sha256": hashlib.sha256(b"\xff\xfe\x00").hexdigest(),
         "content": None},
    ]  # fmt: skip


def test_whatever_cannot_be_kept_is_skipped_with_a_reason(workspace):
    with open(os.path.join(os.fsencode(workspace), b"bad\xff"), "w") as f:
        f.write("x")
    os.mkfifo(workspace / "fifo")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(workspace / "sock"))
    os.mknod(workspace / "null", stat.S_IFCHR | 0o600, os.makedev(1, 3))  # tests run as root
    nest(workspace, 1100)
    long_dir = workspace.joinpath(*["x" * 200] * 6)
    long_dir.mkdir(parents=True)
    (long_dir / "f").write_text("L")
    (workspace / "ok.txt").write_text("kept")

    collected = collect_outputs(workspace, output_limits())

    assert [f["path"] for f in collected["files"]] == ["ok.txt"]
    reasons = [(s["path"][:8], s["reason"].split(":")[0]) for s in collected["skipped"]]
    assert reasons == [
        ("bad\\xff", "name_not_utf8"),
        ("d/d/d/d/", "too_deep"),
        ("fifo", "not_a_regular_file"),
        ("null", "not_a_regular_file"),
        ("sock", "not_a_regular_file"),
        ("x" * 8, "path_too_long"),
    ]
    assert collected["skipped"][3]["reason"] == "not_a_regular_file: character device"
    assert collected["skippedCount"] == 6


def test_limits_on_count_and_size_skip_the_rest(workspace):
    for name in ("a", "c", "d"):
        (workspace / name).write_bytes(b"12345")
    (workspace / "big").write_bytes(b"x" * 100)

    collected = collect_outputs(workspace, output_limits(max_files=2, max_file_bytes=50))

    assert [f["path"] for f in collected["files"]] == ["a", "c"]
    assert [(s["path"], s["reason"].split(":")[0]) for s in collected["skipped"]] == [
        ("big", "too_large"),
        ("d", "too_many_files"),
    ]


def test_a_file_changing_while_it_is_stored_is_skipped(workspace):
    (workspace / "growing.log").write_text("start")

    def store(fd: int, size: int, index: int) -> str:
        with open(workspace / "growing.log", "a") as f:
            f.write(" and more")
        return "0" * 64

    collected = collect_outputs(workspace, output_limits(), store)

    assert collected["files"] == []
    assert collected["skipped"][0]["reason"].startswith("changed_while_read")


def test_a_store_refusal_skips_the_file_and_keeps_the_rest(workspace):
    (workspace / "a.txt").write_text("a")
    (workspace / "b.txt").write_text("b")

    calls = []

    def store(fd: int, size: int, index: int) -> str:
        calls.append(index)
        if len(calls) == 1:
            raise SkipFile("storage_unavailable: the API answered 503")
        return hashlib.sha256(os.pread(fd, size, 0)).hexdigest()

    collected = collect_outputs(workspace, output_limits(), store)

    assert [f["path"] for f in collected["files"]] == ["b.txt"]
    assert collected["files"][0]["stored"] == 0
    assert collected["skipped"] == [
        {"path": "a.txt", "reason": "storage_unavailable: the API answered 503"}
    ]


def test_the_engine_directory_is_never_listed(workspace):
    (workspace / ".engine" / "home").mkdir(parents=True)
    (workspace / ".engine" / "home" / "session.json").write_text("{}")
    (workspace / "sub" / ".engine").mkdir(parents=True)
    (workspace / "sub" / ".engine" / "x").write_text("listed: only the top one is hidden")

    files = collect_outputs(workspace, output_limits())["files"]

    assert [f["path"] for f in files] == ["sub/.engine/x"]


def test_remove_tree_deletes_any_depth_and_any_name(workspace):
    nest(workspace, 1100)
    with open(os.path.join(os.fsencode(workspace), b"bad\xff"), "w") as f:
        f.write("x")
    os.mkfifo(workspace / "fifo")
    locked = workspace / "locked"
    locked.mkdir()
    (locked / "inside").write_text("x")
    os.symlink("/etc", workspace / "etc-link")

    remove_tree(workspace)

    assert not workspace.exists()
    assert os.path.exists("/etc/passwd")  # the symlink was removed, not followed


def test_names_with_control_characters_are_skipped_and_shown_escaped(workspace):
    (workspace / "two\nlines.txt").write_text("x")
    (workspace / "\x1b[31mred").write_text("x")
    (workspace / "dir\r").mkdir()
    (workspace / "dir\r" / "inside.txt").write_text("x")
    (workspace / "fine.txt").write_text("x")
    os.symlink("target\x1b]0;title\x07", workspace / "link")

    collected = collect_outputs(workspace, output_limits())

    files = {f["path"]: f for f in collected["files"]}
    assert set(files) == {"fine.txt", "link"}
    assert files["link"]["target"] == "target\\x1b]0;title\\x07"
    skipped = {s["path"]: s["reason"] for s in collected["skipped"]}
    assert skipped == {
        "two\\x0alines.txt": "name_has_control_characters",
        "\\x1b[31mred": "name_has_control_characters",
        "dir\\x0d": "name_has_control_characters",
    }
    shown = [v for entry in [*collected["files"], *collected["skipped"]] for v in entry.values()]
    assert not any(char in str(value) for value in shown for char in ("\n", "\x1b", "\r"))
