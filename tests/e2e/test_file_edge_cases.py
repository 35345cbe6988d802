"""Edge cases of files through the API (issue 21): a Range suffix longer than the file,
a file whose name holds a newline, and a bad ?archive= where there is no workspace."""

from __future__ import annotations

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


def test_a_file_whose_name_holds_a_newline_is_skipped_with_its_reason(alice):
    # The runner keeps no name with control characters (main's choice): it is listed
    # as skipped, so nothing is listed that cannot be downloaded.
    task = alice.run(kind="code", language="bash", code=PROGRAM)
    assert [f["path"] for f in task["result"]["files"]] == ["data.txt"]
    assert task["result"]["skipped"] == [
        {"path": "new\\x0aline.txt", "reason": "name_has_control_characters"}
    ]


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

    program = "printf a > '..\\..\\evil.txt'; printf b > 'ok.txt'"
    task = alice.run(kind="code", language="bash", code=program)
    assert {f["path"] for f in task["result"]["files"]} == {"..\\..\\evil.txt", "ok.txt"}
    url = f"/api/tasks/{task['id']}/files"
    zipped = zipfile.ZipFile(io.BytesIO(alice.http.get(url, params={"archive": "zip"}).content))
    assert sorted(zipped.namelist()) == [".._.._evil.txt", "ok.txt"]
    packed = io.BytesIO(alice.http.get(url, params={"archive": "tar.gz"}).content)
    with tarfile.open(fileobj=packed) as tarred:
        assert sorted(tarred.getnames()) == [".._.._evil.txt", "ok.txt"]
