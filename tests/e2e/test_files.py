"""Files end to end: a real API server, real runner processes in real bubblewrap,
Firestore and Cloud Storage emulators (fake-gcs-server)."""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile
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
        assert bundle.extractfile("out/a.txt").read() == b"alpha"


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
