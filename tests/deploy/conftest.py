"""Fixtures for the deploy tests: deploy-gcp.sh with the real gcloud against the
recorder. gcloud starts in about a second, so each scenario is one or two runs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.deploy.harness import Project, Run, assert_ok
from tests.deploy.scenarios import run_all


@pytest.fixture
def project(tmp_path):
    project = Project(tmp_path)
    yield project
    project.close()


@pytest.fixture(scope="session")
def deployed(tmp_path_factory) -> Iterator[tuple[Project, Run, Run]]:
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


@pytest.fixture(scope="session")
def scenarios(deployed, tmp_path_factory) -> Iterator[dict]:
    """scenarios.py's runs, each on a copy of what `deployed` left, all at once."""
    results = run_all(deployed[0], tmp_path_factory.mktemp("scenarios"))
    yield results
    for project, _ in results.values():
        project.close()
