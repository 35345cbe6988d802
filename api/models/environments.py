"""`POST /api/environments`: a custom environment's manifest (DESIGN section 17)."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from packaging.requirements import InvalidRequirement, Requirement
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from api import config

EnvironmentName = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"),
    Field(description="Unique among your environments: letters, digits, `.`, `_`, `-`."),
]


def check_requirement(text: str) -> str:
    """A requirement from the package index, as pip reads one line (`numpy`,
    `pandas==2.2.3`, `requests[socks]>=2.31`), normalised; never a URL, a path or an
    option: the build reaches the package index only.

    :raises ValueError: anything else.
    """
    if len(text) > config.MAX_REQUIREMENT_CHARS:
        raise ValueError(f"a requirement is at most {config.MAX_REQUIREMENT_CHARS} characters")
    try:
        requirement = Requirement(text)
    except InvalidRequirement as problem:
        raise ValueError(
            f"{text!r} is not a requirement (e.g. 'pandas==2.2.3'): {problem}"
        ) from None
    if requirement.url:
        raise ValueError(f"{text!r} names a URL: packages come from the package index only")
    return str(requirement)


# An npm package from the registry, with an optional version or range: `lodash`,
# `lodash@4.17.21`, `@types/node@^20`. Never a URL, a git repository, a path or a tag
# with a colon (the forms npm would fetch from elsewhere).
NPM_SPEC = re.compile(
    r"^(@[a-z0-9][a-z0-9._~-]*/)?[a-z0-9][a-z0-9._~-]*(@[A-Za-z0-9.^~<>=| *+-]{1,100})?$"
)


def check_npm_spec(text: str) -> str:
    """:raises ValueError: not a registry package (`name` or `name@version`)."""
    if len(text) > config.MAX_REQUIREMENT_CHARS or not NPM_SPEC.match(text):
        raise ValueError(
            f"{text!r} is not an npm package from the registry (e.g. 'lodash@4.17.21'): "
            "no URLs, git repositories or paths"
        )
    return text


class EnvironmentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: EnvironmentName
    python: list[str] = Field(
        default_factory=list,
        max_length=config.MAX_ENVIRONMENT_PACKAGES,
        description="Requirements pip installs from the package index, on top of the "
        "default environment (`numpy`, `pandas==2.2.3`): no URLs, paths or options.",
    )
    npm: list[str] = Field(
        default_factory=list,
        max_length=config.MAX_ENVIRONMENT_PACKAGES,
        description="npm packages from the registry (`lodash@4.17.21`), installed with "
        "the default environment's npm: no URLs, git repositories or paths.",
    )

    @field_validator("python")
    @classmethod
    def _requirements(cls, python: list[str]) -> list[str]:
        return list(dict.fromkeys(check_requirement(text) for text in python))

    @field_validator("npm")
    @classmethod
    def _npm_specs(cls, npm: list[str]) -> list[str]:
        return list(dict.fromkeys(check_npm_spec(text) for text in npm))

    @model_validator(mode="after")
    def _some_packages(self) -> EnvironmentCreate:
        if not self.python and not self.npm:
            raise ValueError("name at least one package, in python or npm")
        return self


class EnvironmentBuildInput(BaseModel):
    """A build task's input (`kind: "environment"`), made by POST /api/environments."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    kind: Literal["environment"]
    name: EnvironmentName
    python: list[str]
    npm: list[str] = Field(default_factory=list)
    hash: str = Field(
        description="The hash of its packages and of the default environment they are built "
        "on, which its archive is stored under."
    )
    timeout_seconds: int = Field(alias="timeoutSeconds")
    memory_mb: int = Field(alias="memoryMb")
