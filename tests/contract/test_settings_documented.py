"""Every environment variable the API reads is in the README's configuration table
(DESIGN section 5: "a new setting goes in both")."""

from __future__ import annotations

import re

from api.config import Settings
from tests.conftest import ROOT

# Read by the platform, not set by operators: Cloud Run sets K_SERVICE itself.
SET_BY_CLOUD_RUN = {"K_SERVICE"}


def read_variables() -> set[str]:
    """The settings' variables (api/config.py), and those gunicorn.conf.py reads."""
    gunicorn = (ROOT / "gunicorn.conf.py").read_text()
    names = set(re.findall(r"""os\.environ\.get\(\s*"([A-Z][A-Z0-9_]*)\"""", gunicorn))
    return {*Settings.variables(), *names} - SET_BY_CLOUD_RUN


def documented_variables() -> set[str]:
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    # A row names one variable, or two as `A` / `B`.
    rows = re.findall(r"^\| `([A-Z][A-Z0-9_]*)`(?: / `([A-Z][A-Z0-9_]*)`)?", table, re.M)
    return {name for row in rows for name in row if name}


def test_every_variable_the_api_reads_is_in_the_readmes_configuration_table():
    assert read_variables(), "found no settings"
    assert read_variables() - documented_variables() == set()
