"""Fixtures for the deploy tests: deploy-gcp.sh against a recording fake cloud."""

from __future__ import annotations

import shutil

import pytest

from tests.deploy.harness import FakeCloud, Run


@pytest.fixture
def cloud(tmp_path) -> FakeCloud:
    return FakeCloud(tmp_path)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory) -> tuple[FakeCloud, Run, Run]:
    """One project deployed twice with the same settings: (cloud, first run, second run)."""
    cloud = FakeCloud(tmp_path_factory.mktemp("deployed"))
    key = str(cloud.key_file())
    first = cloud.run("--anthropic-key-file", key)
    assert first.returncode == 0, first.stderr
    second = cloud.run("--anthropic-key-file", key)
    assert second.returncode == 0, second.stderr
    return cloud, first, second


@pytest.fixture
def deployed_cloud(deployed, tmp_path) -> FakeCloud:
    """A fresh fake cloud holding the project `deployed` left: for one more run."""
    cloud = FakeCloud(tmp_path)
    shutil.copy(deployed[0].state_file, cloud.state_file)
    return cloud
