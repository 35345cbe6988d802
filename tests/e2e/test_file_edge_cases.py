"""Edge cases of files through the API (issue 21): a Range suffix longer than the file,
a file whose name holds a newline, and a bad ?archive= where there is no workspace."""

from __future__ import annotations

from urllib.parse import quote

PROGRAM = "printf 0123456789 > data.txt; printf nl > \"$(printf 'new\\nline.txt')\""


def test_a_range_suffix_longer_than_the_file_is_the_whole_file(alice):
    task = alice.run(kind="code", language="bash", code=PROGRAM)
    reply = alice.http.get(
        f"/api/tasks/{task['id']}/files/data.txt", headers={"Range": "bytes=-100"}
    )
    assert reply.status_code == 206
    assert reply.content == b"0123456789"
    assert reply.headers["Content-Range"] == "bytes 0-9/10"
    last = alice.http.get(f"/api/tasks/{task['id']}/files/data.txt", headers={"Range": "bytes=-3"})
    assert (last.status_code, last.content) == (206, b"789")


def test_a_file_whose_name_holds_a_newline_is_listed_and_downloadable(alice):
    task = alice.run(kind="code", language="bash", code=PROGRAM)
    listed = [f["path"] for f in task["result"]["files"]]
    assert "new\nline.txt" in listed
    name = quote("new\nline.txt")
    reply = alice.http.get(f"/api/tasks/{task['id']}/files/{name}")
    assert reply.status_code == 200, reply.text
    assert reply.content == b"nl"


def test_an_unknown_archive_kind_is_400_even_without_a_workspace(alice):
    conversation = alice.http.post("/api/conversations", json={}).json()
    reply = alice.http.get(
        f"/api/conversations/{conversation['id']}/files", params={"archive": "AAA"}
    )
    assert reply.status_code == 400, reply.text


def test_archive_entries_have_no_backslashes_or_control_characters(alice):
    import io
    import tarfile
    import zipfile

    program = "printf a > '..\\..\\evil.txt'; printf b > \"$(printf 'ctl\\001.txt')\""
    task = alice.run(kind="code", language="bash", code=program)
    assert {f["path"] for f in task["result"]["files"]} == {"..\\..\\evil.txt", "ctl\x01.txt"}
    url = f"/api/tasks/{task['id']}/files"
    zipped = zipfile.ZipFile(io.BytesIO(alice.http.get(url, params={"archive": "zip"}).content))
    assert sorted(zipped.namelist()) == [".._.._evil.txt", "ctl_.txt"]
    packed = io.BytesIO(alice.http.get(url, params={"archive": "tar.gz"}).content)
    with tarfile.open(fileobj=packed) as tarred:
        assert sorted(tarred.getnames()) == [".._.._evil.txt", "ctl_.txt"]
