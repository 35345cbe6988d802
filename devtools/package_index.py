"""A loopback Python package index (PEP 503 "simple" pages) serving packages made
here, for custom environment builds in tests and `make bench` (the real PyPI is the
deployment's PACKAGE_INDEX_URL).

It serves:
  - `make_wheel` wheels: a module (VALUE = 42, an optional payload of given size)
    and a console script;
  - `make_sdist` source distributions whose build backend (itself a wheel on the
    index) runs code at build time, as any sdist's setup.py may: what that code saw
    of the network is written into the package it builds.
  - `add_npm_package` packages under /npm/ (an npm registry: a packument per name,
    tarballs under /npm/-/), whose module exports VALUE = 42 and whose bin prints
    "<name> ran".
Every request's path is recorded in `requests`.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
import threading
import zipfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

# The build backend an sdist of `make_sdist` names: it tries the network, then makes a
# wheel whose module holds what it saw (`SEEN`).
PROBING_BACKEND = """
import base64, hashlib, json, os, socket, urllib.request, zipfile

PROBE_URL = "%(probe_url)s"

def _try(what):
    try:
        what()
        return "reached"
    except Exception as problem:
        return f"refused: {type(problem).__name__}"

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    lines = open("PKG-INFO").read().splitlines()
    fields = dict(line.split(": ", 1) for line in lines if ": " in line)
    name, version = fields["Name"], fields["Version"]
    seen = {
        "proxied": _try(lambda: urllib.request.urlopen(PROBE_URL, timeout=5)),
        "direct": _try(lambda: socket.create_connection(("1.1.1.1", 80), timeout=3).close()),
    }
    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f"SEEN = {json.dumps(seen)!r}\\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\\nName: {name}\\nVersion: {version}\\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\\nGenerator: probe\\nRoot-Is-Purelib: true\\n"
        "Tag: py3-none-any\\n",
    }
    wheel = f"{name}-{version}-py3-none-any.whl"
    record = []
    with zipfile.ZipFile(os.path.join(wheel_directory, wheel), "w") as archive:
        for path, text in files.items():
            digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest())
            record.append(f"{path},sha256={digest.rstrip(b'=').decode()},{len(text)}")
            archive.writestr(path, text)
        record_path = f"{name}-{version}.dist-info/RECORD"
        archive.writestr(record_path, "\\n".join([*record, f"{record_path},,"]) + "\\n")
    return wheel
"""


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def make_wheel(
    into: Path,
    name: str,
    version: str,
    *,
    payload_bytes: int = 0,
    modules: dict[str, str] | None = None,
) -> Path:
    """A pure-Python wheel: `name` (VALUE = 42, main() printing "<name> ran", a console
    script), `payload_bytes` of incompressible data beside it, and more `modules`."""
    wheel = into / f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    files: dict[str, bytes] = {
        f"{name}/__init__.py": f"VALUE = 42\ndef main():\n    print('{name} ran')\n".encode(),
        **{path: text.encode() for path, text in (modules or {}).items()},
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
        f"{info}/entry_points.txt": f"[console_scripts]\n{name} = {name}:main\n".encode(),
    }
    if payload_bytes:
        files[f"{name}/payload.bin"] = os.urandom(payload_bytes)
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
        lines = [_record_line(path, data) for path, data in files.items()]
        archive.writestr(f"{info}/RECORD", "\n".join([*lines, f"{info}/RECORD,,"]) + "\n")
    return wheel


def make_sdist(into: Path, name: str, version: str, backend: str) -> Path:
    """A source distribution built by `backend` (a module on the index)."""
    sdist = into / f"{name}-{version}.tar.gz"
    top = f"{name}-{version}"
    files = {
        f"{top}/pyproject.toml": f'[build-system]\nrequires = ["{backend}"]\n'
        f'build-backend = "{backend}"\n',
        f"{top}/PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
    }
    with tarfile.open(sdist, "w:gz") as tar:
        for path, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return sdist


class PackageIndex:
    """A simple index on loopback. `url` is its /simple/ URL; `add` publishes a file."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="package-index-"))
        self.requests: list[str] = []
        index = self

        class Handler(SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs) -> None:
                super().__init__(*args, directory=str(index.root), **kwargs)

            def do_GET(self) -> None:
                index.requests.append(self.path)
                super().do_GET()

            def log_message(self, *args) -> None:
                pass

            def guess_type(self, path) -> str:
                # An npm packument has no extension; npm wants JSON.
                if "/npm/" in str(path) and not str(path).endswith(".tgz"):
                    return "application/json"
                return super().guess_type(path)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/simple/"

    def add(self, name: str, path: Path) -> None:
        """Publish the distribution file `path` (in self.root) as a version of `name`."""
        page = self.root / "simple" / name / "index.html"
        page.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        links = page.read_text() if page.exists() else ""
        page.write_text(links + f'<a href="../../{path.name}#sha256={digest}">{path.name}</a>\n')

    def add_wheel(self, name: str, version: str, **options) -> Path:
        wheel = make_wheel(self.root, name, version, **options)
        self.add(name, wheel)
        return wheel

    def add_probing_sdist(self, name: str, version: str, probe_url: str) -> Path:
        """An sdist whose build tries `probe_url` through the build's proxy and an
        address directly (PROBING_BACKEND, published as the wheel `probebackend`)."""
        if not (self.root / "simple" / "probebackend").exists():
            backend = PROBING_BACKEND % {"probe_url": probe_url}
            self.add(
                "probebackend",
                make_wheel(
                    self.root, "probebackend", "1.0", modules={"probebackend/__init__.py": backend}
                ),  # fmt: skip
            )
        sdist = make_sdist(self.root, name, version, "probebackend")
        self.add(name, sdist)
        return sdist

    def add_npm_package(self, name: str, version: str, public_url: str) -> None:
        """Publish an npm package `name@version`; public_url is the registry's URL as
        clients reach it (tarball links are absolute), e.g. `http://npm.test/npm/`."""
        files = {
            "package/package.json": json.dumps(
                {"name": name, "version": version, "main": "index.js", "bin": {name: "bin.js"}}
            ),
            "package/index.js": "module.exports = { VALUE: 42 };\n",
            "package/bin.js": f"#!/usr/bin/env node\nconsole.log('{name} ran');\n",
        }
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            for path, text in files.items():
                data = text.encode()
                info = tarfile.TarInfo(path)
                info.size, info.mode = len(data), 0o755 if path.endswith("bin.js") else 0o644
                tar.addfile(info, io.BytesIO(data))
        tarball = buffer.getvalue()
        (self.root / "npm" / "-").mkdir(parents=True, exist_ok=True)
        (self.root / "npm" / "-" / f"{name}-{version}.tgz").write_bytes(tarball)
        integrity = "sha512-" + base64.b64encode(hashlib.sha512(tarball).digest()).decode()
        packument = {
            "name": name,
            "dist-tags": {"latest": version},
            "versions": {
                version: {
                    "name": name,
                    "version": version,
                    "bin": {name: "bin.js"},
                    "dist": {
                        "tarball": f"{public_url.rstrip('/')}/-/{name}-{version}.tgz",
                        "shasum": hashlib.sha1(tarball).hexdigest(),  # noqa: S324 (npm's)
                        "integrity": integrity,
                    },
                }
            },
        }
        (self.root / "npm" / name).write_text(json.dumps(packument))

    def __enter__(self) -> PackageIndex:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        shutil.rmtree(self.root, ignore_errors=True)
