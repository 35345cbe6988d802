"""Files end to end: a real API server, real runner processes in real bubblewrap,
Firestore and Cloud Storage emulators (fake-gcs-server)."""

from __future__ import annotations

import base64
import glob
import hashlib
import io
import os
import secrets
import tarfile
import tempfile
import zipfile

PNG_PROGRAM = r"""
import struct, zlib
def chunk(kind, data):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))
raw = b"".join(b"\x00" + bytes((x * 7 + y * 3) % 256 for x in range(64 * 3)) for y in range(64))
png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 64, 64, 8, 2, 0, 0, 0))
       + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
open("chart.png", "wb").write(png)
import hashlib; print(hashlib.sha256(png).hexdigest())
"""


def test_a_png_written_by_a_task_downloads_byte_identical(alice):
    task = alice.run(code=PNG_PROGRAM)
    assert task["status"] == "completed", task
    printed = task["result"]["stdout"].strip()
    (entry,) = task["result"]["files"]
    assert entry["path"] == "chart.png"
    assert entry["sha256"] == printed
    assert entry["contentType"] == "image/png"
    assert entry["content"] is None
    assert "stored" not in entry
    reply = alice.http.get(f"/api/tasks/{task['id']}/files/chart.png")
    assert reply.status_code == 200
    assert reply.headers["Content-Type"] == "image/png"
    assert int(reply.headers["Content-Length"]) == entry["size"]
    assert hashlib.sha256(reply.content).hexdigest() == printed
    part = alice.http.get(
        f"/api/tasks/{task['id']}/files/chart.png", headers={"Range": "bytes=10-99"}
    )
    assert part.status_code == 206
    assert part.headers["Content-Range"] == f"bytes 10-99/{entry['size']}"
    assert part.content == reply.content[10:100]


def test_input_files_may_be_text_base64_or_an_upload(alice):
    blob = bytes(range(256)) * 100
    upload = alice.http.post(
        "/api/uploads", content=blob, headers={"Content-Type": "application/octet-stream"}
    )
    assert upload.status_code == 201, upload.text
    assert upload.json()["size"] == len(blob)
    assert upload.json()["sha256"] == hashlib.sha256(blob).hexdigest()
    program = (
        "import hashlib\n"
        "for name in ('a.txt', 'b.bin', 'data/c.bin'):\n"
        "    print(name, hashlib.sha256(open(name, 'rb').read()).hexdigest())\n"
    )
    task = alice.run(
        code=program,
        files={
            "a.txt": "hello",
            "b.bin": {"base64": base64.b64encode(b"\x00\xff\x89").decode()},
            "data/c.bin": {"upload": upload.json()["id"]},
        },
    )
    assert task["status"] == "completed", task
    lines = task["result"]["stdout"].split("\n")
    assert lines[0] == f"a.txt {hashlib.sha256(b'hello').hexdigest()}"
    binary = hashlib.sha256(bytes([0, 255, 137])).hexdigest()
    assert lines[1] == f"b.bin {binary}"
    assert lines[2] == f"data/c.bin {hashlib.sha256(blob).hexdigest()}"


def test_bad_inputs_are_refused_and_no_task_is_created(alice, bob):
    def refused(files, status, code):
        reply = alice.http.post(
            "/api/tasks", json={"kind": "code", "language": "python", "code": "1", "files": files}
        )
        assert reply.status_code == status, reply.text
        assert reply.json()["error"]["code"] == code
        return reply.json()["error"]["message"]

    assert "base64" in refused({"x": {"base64": "not base64!"}}, 400, "invalid_request")
    big = base64.b64encode(b"x" * 300_000).decode()
    assert "POST /api/uploads" in refused({"x": {"base64": big}}, 413, "too_large")
    assert "upload" in refused({"x": {"upload": "0" * 24}}, 404, "upload_not_found")
    theirs = bob.http.post(
        "/api/uploads", content=b"bob's", headers={"Content-Type": "application/octet-stream"}
    ).json()
    refused({"x": {"upload": theirs["id"]}}, 404, "upload_not_found")
    assert alice.http.get("/api/tasks").json()["tasks"] == []


def test_listing_and_archives_hold_every_file(alice):
    code = (
        "import os\nos.makedirs('out/deep', exist_ok=True)\n"
        "open('out/a.txt', 'w').write('alpha')\n"
        "open('out/deep/b.bin', 'wb').write(bytes(range(256)))\n"
        "os.symlink('/etc/passwd', 'link')\n"
    )
    task = alice.run(code=code)
    listing = alice.http.get(f"/api/tasks/{task['id']}/files").json()
    paths = {f["path"]: f for f in listing["files"]}
    assert set(paths) == {"link", "out/a.txt", "out/deep/b.bin"}
    assert paths["link"]["symlink"] is True and paths["link"]["target"] == "/etc/passwd"
    assert paths["out/a.txt"]["content"] == "alpha"
    archive = alice.http.get(f"/api/tasks/{task['id']}/files", params={"archive": "zip"})
    assert archive.status_code == 200
    with zipfile.ZipFile(io.BytesIO(archive.content)) as bundle:
        assert sorted(bundle.namelist()) == ["out/a.txt", "out/deep/b.bin"]
        assert bundle.read("out/deep/b.bin") == bytes(range(256))
    archive = alice.http.get(f"/api/tasks/{task['id']}/files", params={"archive": "tar.gz"})
    with tarfile.open(fileobj=io.BytesIO(archive.content), mode="r:gz") as bundle:
        member = bundle.extractfile("out/a.txt")
        assert member is not None and member.read() == b"alpha"


def test_another_user_gets_404_on_every_file_route(alice, bob):
    task = alice.run(code="open('f.txt', 'w').write('mine')")
    for path in (f"/api/tasks/{task['id']}/files", f"/api/tasks/{task['id']}/files/f.txt"):
        reply = bob.http.get(path)
        assert reply.status_code == 404, (path, reply.text)
    assert alice.http.get(f"/api/tasks/{task['id']}/files/nope.txt").status_code == 404
    conversation = alice.http.post("/api/conversations", json={}).json()
    for path in (
        f"/api/conversations/{conversation['id']}/files",
        f"/api/conversations/{conversation['id']}/files/f.txt",
    ):
        assert bob.http.get(path).status_code == 404, path


def test_a_non_utf8_file_name_is_skipped_and_the_result_kept(alice):
    task = alice.run(code='open(b"/workspace/bad\\xff", "w").write("x")\nprint("done")')
    assert task["status"] == "completed", task
    assert task["result"]["exitCode"] == 0
    assert task["result"]["stdout"] == "done\n"
    assert task["result"]["skipped"] == [{"path": "bad\\xff", "reason": "name_not_utf8"}]


def test_1100_nested_directories_are_skipped_and_removed_from_the_host(alice):
    name = f"nest{secrets.token_hex(6)}"  # this test's own: other tests run beside it
    code = (
        "import os\n"
        "for _ in range(1100):\n"
        f"    os.mkdir('{name}'); os.chdir('{name}')\n"
        "open('deep.txt', 'w').write('deep')\n"
        "print('nested')\n"
    )
    task = alice.run(code=code)
    assert task["status"] == "completed", task
    assert task["result"]["stdout"] == "nested\n"
    (skipped,) = task["result"]["skipped"]
    assert skipped["path"].startswith(f"{name}/{name}/")
    # 1,000 characters come before 128 levels with this name.
    assert skipped["reason"].startswith("path_too_long")
    # The runner removed the whole tree from the host (shutil.rmtree could not).
    left = glob.glob(os.path.join(tempfile.gettempdir(), "*", "workspace-*", name))
    assert left == []


def test_a_path_over_1000_characters_is_skipped(alice):
    code = (
        "import os\n"
        "path = '/'.join(['x' * 200] * 6)\n"
        "os.makedirs(path)\n"
        "open(path + '/f.txt', 'w').write('long')\n"
        "open('short.txt', 'w').write('kept')\n"
    )
    task = alice.run(code=code)
    assert task["status"] == "completed", task
    assert [f["path"] for f in task["result"]["files"]] == ["short.txt"]
    (skipped,) = task["result"]["skipped"]
    assert skipped["reason"].startswith("path_too_long")


def test_fifos_sockets_and_unreadable_files_are_skipped_or_kept(alice):
    code = (
        "import os, socket\n"
        "os.mkfifo('fifo')\n"
        "socket.socket(socket.AF_UNIX).bind('sock')\n"
        "open('secret.txt', 'w').write('s'); os.chmod('secret.txt', 0)\n"
        "os.symlink('/nowhere', 'dangling')\n"
    )
    task = alice.run(code=code)
    assert task["status"] == "completed", task
    reasons = {s["path"]: s["reason"] for s in task["result"]["skipped"]}
    assert reasons == {
        "fifo": "not_a_regular_file: fifo",
        "sock": "not_a_regular_file: socket",
    }
    kept = {f["path"]: f for f in task["result"]["files"]}
    assert kept["dangling"]["symlink"] is True
    assert kept["secret.txt"]["content"] == "s"  # the runner reads what the program hid


def _server_peak_rss_kib(server) -> int:
    """The peak resident memory (VmHWM) of the API server's worker process."""
    with open(f"/proc/{server.process.pid}/task/{server.process.pid}/children") as f:
        (worker,) = f.read().split()
    with open(f"/proc/{worker}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


FIFTY_MIB = 50 * 1024 * 1024
# What streaming may cost beside the bytes: a resumable upload's 4 MiB chunk (twice), a few
# 1 MiB read pieces and the allocator's slack. Buffering the file would cost 50 MiB+.
RSS_BOUND_KIB = 24 * 1024


def test_50_mib_upload_and_output_leave_the_api_memory_nearly_flat(api_server, alice):
    # Warm every path the measured run takes (a resumable upload in chunks, an input
    # fetched in ranges, an output sent in pieces and streamed back) with 6 MiB: what
    # their first use imports and allocates is not what a bigger file costs.
    warm_upload = alice.http.post(
        "/api/uploads",
        content=b"w" * (6 * 1024 * 1024),
        headers={"Content-Type": "application/octet-stream"},
    )
    assert warm_upload.status_code == 201, warm_upload.text
    warm = alice.run(
        code="open('w.bin', 'wb').write(open('in.bin', 'rb').read())",
        files={"in.bin": {"upload": warm_upload.json()["id"]}},
    )
    with alice.http.stream("GET", f"/api/tasks/{warm['id']}/files/w.bin") as reply:
        assert reply.status_code == 200
        for _ in reply.iter_bytes():
            pass
    before = _server_peak_rss_kib(api_server)

    def chunks():
        block = bytes(range(256)) * 4096  # 1 MiB
        for _ in range(50):
            yield block

    upload = alice.http.post(
        "/api/uploads", content=chunks(), headers={"Content-Type": "application/octet-stream"}
    )
    assert upload.status_code == 201, upload.text
    assert upload.json()["size"] == FIFTY_MIB
    code = (
        "import hashlib\n"
        "data = open('in.bin', 'rb').read()\n"
        "print(hashlib.sha256(data).hexdigest())\n"
        "open('out.bin', 'wb').write(data[::-1])\n"
    )
    task = alice.run(code=code, files={"in.bin": {"upload": upload.json()["id"]}}, memoryMb=1024)
    assert task["status"] == "completed", task
    assert task["result"]["stdout"].strip() == upload.json()["sha256"]
    files = {f["path"]: f for f in task["result"]["files"]}
    assert "out.bin" in files, task["result"]
    entry = files["out.bin"]
    assert entry["size"] == FIFTY_MIB
    digest, size = hashlib.sha256(), 0
    with alice.http.stream("GET", f"/api/tasks/{task['id']}/files/out.bin") as reply:
        assert reply.status_code == 200
        for piece in reply.iter_bytes():
            digest.update(piece)
            size += len(piece)
    assert size == FIFTY_MIB and digest.hexdigest() == entry["sha256"]
    grown = _server_peak_rss_kib(api_server) - before
    print(f"API peak RSS grew by {grown} KiB for a 50 MiB upload, input, output and download")
    assert grown < RSS_BOUND_KIB


def test_with_storage_down_files_answer_503_and_a_task_fails_storage_unavailable(
    api_server, alice, emulator, tmp_path
):
    from devtools.emulator import free_port
    from tests.conftest import ApiServer, Caller

    upload = alice.http.post(
        "/api/uploads", content=b"needed", headers={"Content-Type": "application/octet-stream"}
    ).json()
    earlier = alice.run(code="open('out.txt', 'w').write('x')")
    down = ApiServer(
        emulator,
        tmp_path / "api.log",
        STORAGE_EMULATOR_HOST=f"http://127.0.0.1:{free_port()}",  # nothing listens there
        STORAGE_RETRY_SECONDS="0.5",
    ).start()
    try:
        caller = Caller(down.url, "alice")
        refused = caller.http.post(
            "/api/uploads", content=b"x", headers={"Content-Type": "application/octet-stream"}
        )
        assert refused.status_code == 503
        assert refused.headers["Retry-After"].isdigit()
        assert refused.json()["error"]["code"] == "storage_unavailable"
        download = caller.http.get(f"/api/tasks/{earlier['id']}/files/out.txt")
        assert download.status_code == 503 and download.headers["Retry-After"].isdigit()
        task = caller.run(
            code="print(open('in.txt').read())", files={"in.txt": {"upload": upload["id"]}}
        )
        assert task["status"] == "failed", task
        assert task["error"]["code"] == "storage_unavailable"
        caller.http.close()
    finally:
        down.stop()


def test_a_streamed_upload_over_the_limit_is_413(emulator, firestore, tmp_path):
    from tests.conftest import ApiServer, Caller

    server = ApiServer(emulator, tmp_path / "api.log", MAX_UPLOAD_MB="1").start()
    try:
        caller = Caller(server.url, "alice")

        def pieces():  # no Content-Length: the limit is found while reading
            for _ in range(3):
                yield b"x" * (512 * 1024)

        reply = caller.http.post(
            "/api/uploads", content=pieces(), headers={"Content-Type": "application/octet-stream"}
        )
        assert reply.status_code == 413, reply.text
        assert "1048576 bytes" in reply.json()["error"]["message"]
        caller.http.close()
    finally:
        server.stop()


def test_an_upload_in_three_parts_out_of_order_feeds_a_real_task(alice, bob):
    """Cloud Run caps a request at 32 MiB: a bigger file comes in parts, here three
    (the last one short), sent out of order and streamed, joined into one upload."""
    mib = 1024 * 1024
    parts = [bytes([k]) * 4 * mib + secrets.token_bytes(1000) for k in range(2)]
    parts.append(secrets.token_bytes(12345))
    whole = b"".join(parts)
    octets = {"Content-Type": "application/octet-stream"}
    begun = alice.http.post("/api/uploads?parts=3")
    assert begun.status_code == 201, begun.text
    upload_id = begun.json()["id"]
    url = f"/api/uploads/{upload_id}/parts"

    def streamed(data: bytes):
        for start in range(0, len(data), mib):
            yield data[start : start + mib]

    assert bob.http.put(f"{url}/0", content=parts[0], headers=octets).status_code == 404
    for index in (2, 0):
        reply = alice.http.put(f"{url}/{index}", content=streamed(parts[index]), headers=octets)
        assert reply.status_code == 200, reply.text
    assert reply.json()["missing"] == [1]
    early = alice.http.post(
        "/api/tasks",
        json={
            "kind": "code",
            "language": "python",
            "code": "1",
            "files": {"x": {"upload": upload_id}},
        },
    )
    assert early.status_code == 409, early.text
    assert early.json()["error"]["code"] == "upload_incomplete"
    done = alice.http.put(f"{url}/1", content=streamed(parts[1]), headers=octets)
    assert done.status_code == 200, done.text
    assert done.json()["size"] == len(whole)
    assert done.json()["sha256"] == hashlib.sha256(whole).hexdigest()
    code = "import hashlib; print(hashlib.sha256(open('in.bin', 'rb').read()).hexdigest())"
    task = alice.run(code=code, files={"in.bin": {"upload": upload_id}})
    assert task["status"] == "completed", task
    assert task["result"]["stdout"].strip() == hashlib.sha256(whole).hexdigest()
