"""What a task may reach beyond its files, checked when it is submitted (DESIGN
section 16): its owner's secrets by name, and the network (`network: true`, where
ALLOW_TASK_NETWORK is set) or hosts by name within the operator's ceiling
(`network: {"allow": [...]}`, EGRESS_ALLOWED_DOMAINS). The runner's proxy enforces
the hosts again, after resolving them (job-runner/job_runner/egress_proxy.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from api.errors import ApiError
from api.services.egress import beyond_ceiling

if TYPE_CHECKING:
    from api.services.user_secrets import UserSecretService


class TaskAccessRules:
    def __init__(
        self,
        secrets: UserSecretService,
        *,
        allow_network: bool,
        allowed_domains: tuple[str, ...],
    ) -> None:
        self.secrets = secrets
        self.allow_network = allow_network
        self.allowed_domains = allowed_domains

    def check(self, owner: str, task_inputs: list[dict[str, Any]]) -> None:
        """Check one task's input, or a batch's (one read of the owner's secrets).

        :raises ApiError: 422 for a network the deployment does not allow, or a secret
            the owner does not have."""
        for task_input in task_inputs:
            self._check_network(task_input.get("network"))
        names = {name for task_input in task_inputs for name in task_input.get("secrets") or []}
        self.secrets.check_names(owner, sorted(names))

    def _check_network(self, network: Any) -> None:
        if network is True and not self.allow_network:
            raise ApiError(
                422,
                "network_not_allowed",
                "This deployment does not allow network access from tasks "
                "(set ALLOW_TASK_NETWORK=true to allow it); name the hosts with "
                '`network: {"allow": [...]}` instead.',
            )
        if isinstance(network, dict):
            beyond = beyond_ceiling(network.get("allow") or [], list(self.allowed_domains))
            if beyond:
                ceiling = ", ".join(self.allowed_domains) or "none"
                raise ApiError(
                    422,
                    "egress_not_allowed",
                    f"{', '.join(beyond)} is beyond what this deployment lets tasks reach "
                    f"(EGRESS_ALLOWED_DOMAINS: {ceiling}).",
                )
