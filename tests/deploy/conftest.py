"""Fixtures for the deploy tests: deploy-gcp.sh with the real gcloud against the
recorder. gcloud starts in about a second, so each scenario is one or two runs."""

from __future__ import annotations

import pytest

from tests.deploy.harness import Project, Run, assert_ok


@pytest.fixture
def project(tmp_path):
    project = Project(tmp_path)
    yield project
    project.close()


@pytest.fixture(scope="session")
def deployed(tmp_path_factory) -> tuple[Project, Run, Run]:
    """A fresh project deployed twice with the same settings: (project, first, second)."""
    project = Project(tmp_path_factory.mktemp("deployed"))
    key = str(project.key_file())
    first = project.run("--anthropic-key-file", key)
    assert_ok(first)
    project.after_first = project.cloud.copy()  # what the first run left
    second = project.run("--anthropic-key-file", key)
    assert_ok(second)
    yield project, first, second
    project.close()


@pytest.fixture
def deployed_project(deployed, tmp_path) -> Project:
    """Another project holding what `deployed` left: for one more run."""
    project = deployed[0].copy(tmp_path)
    yield project
    project.close()
