"""What a task's program may reach beyond its files: its owner's secrets, and the
hosts its allow-list names (DESIGN section 16).

The task's spec names both (`secrets`, fetched by name over the internal protocol,
and `limits.egress`); `TaskAccess` holds them for one run. Inside a task's space,
`opened()` starts the egress proxy (egress_proxy.py) on a Unix socket in a private
directory only the sandbox's uid may enter, and `launch()` turns a command into the
one the sandbox runs: behind loopback_forwarder.py, which takes the secrets from the
head of its stdin (never a command line the host's `ps` shows) and points the
program's HTTP(S)_PROXY at the proxy's socket.

A task with a custom environment (environments.py) gets it bound read-only at /env,
and its commands run with its PATH and PYTHONPATH (through `env`, so what they start,
an agent's shell among them, has them too).

Without secrets, egress, an environment or an LLM channel a command runs as it is: a
task that asks for none pays nothing. With `network: true` (the operator's ALLOW_TASK_NETWORK)
the sandbox shares the host's network and no proxy is started.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections import namedtuple

from job_runner.egress_policy import EgressPolicy
from job_runner.egress_proxy import DEFAULT_MAX_BYTES, DEFAULT_MAX_CONNECTIONS, EgressProxy
from job_runner.secret_mask import SecretMask
from job_runner.workspace import make_private_dir

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from job_runner.environments import Restored
    from job_runner.spec import EgressSpec, TaskSpec
    from job_runner.task_space import TaskSpace

CHANNEL_DIR = "/.channel"  # in the sandbox; hidden, outside /workspace
FORWARDER_IN_SANDBOX = f"{CHANNEL_DIR}/loopback_forwarder.py"
SOCKETS_IN_SANDBOX = f"{CHANNEL_DIR}/sockets"
PROXY_SOCKET = "egress.sock"
# A program that makes HTTPS requests verifies them against the system's CAs, which a
# sandbox without network does not otherwise see.
CA_CERTS = "/etc/ssl/certs"
FORWARDER = os.path.join(os.path.dirname(__file__), "loopback_forwarder.py")


class DevHostsRefused(Exception):
    """A task spec asked for loopback stand-ins where the runner runs on Cloud Run."""


class Launch(namedtuple("Launch", "command stdin readonly_binds")):
    """A command as the sandbox runs it, its stdin and what to bind for it."""

    __slots__ = ()


class TaskAccess:
    """One task's secrets and egress; `mask` masks the secrets in all it reports."""

    def __init__(
        self,
        secrets: dict[str, str] | None = None,
        egress: EgressSpec | None = None,
        on_egress: Callable[[dict], None] = lambda record: None,
    ) -> None:
        self.secrets = dict(secrets or {})
        self.egress = egress
        self.on_egress = on_egress
        self.mask = SecretMask(list(self.secrets.values()))
        self.proxy: EgressProxy | None = None
        self._sockets: str | None = None
        # The task's custom environment, once restored (main.py).
        self.environment: Restored | None = None

    @classmethod
    def from_spec(
        cls,
        spec: TaskSpec,
        secrets: dict[str, str],
        on_egress: Callable[[dict], None] = lambda record: None,
    ) -> TaskAccess:
        """The spec's `limits.egress` ({"allow", "maxConnections", "maxBytes",
        "devHosts"}) where the sandbox has no network of its own.

        :raises DevHostsRefused: `devHosts` on Cloud Run (CLOUD_RUN_JOB is set there).
        """
        limits = spec["limits"]
        egress = None if limits["network"] else limits.get("egress")
        if egress and egress.get("devHosts") and os.environ.get("CLOUD_RUN_JOB"):
            raise DevHostsRefused(
                "the task's spec maps hosts to loopback stand-ins (EGRESS_DEV_HOSTS), which "
                "is for local development and refused on Cloud Run"
            )
        return cls(secrets, egress, on_egress)

    @contextlib.contextmanager
    def opened(self, space: TaskSpace) -> Iterator[TaskAccess]:
        """Serve the egress proxy (if the task has egress) while the block runs."""
        if not self.egress or not self.egress.get("allow"):
            yield self
            return
        self._sockets = make_private_dir(space.root, "egress-")
        path = os.path.join(self._sockets, PROXY_SOCKET)
        policy = EgressPolicy(self.egress["allow"], self.egress.get("devHosts"))
        self.proxy = EgressProxy(
            path,
            policy,
            self.on_egress,
            max_connections=self.egress.get("maxConnections", DEFAULT_MAX_CONNECTIONS),
            max_bytes=self.egress.get("maxBytes", DEFAULT_MAX_BYTES),
        )
        os.chmod(path, 0o600)
        if space.uid is not None:  # only the sandbox's uid may connect
            for owned in (self._sockets, path):
                os.chown(owned, space.uid, space.uid)
        self.proxy.start()
        try:
            yield self
        finally:
            self.proxy.close()  # its last connections' events go out with the result
            self.proxy = None

    def launch(self, command: list[str], stdin: bytes = b"", *, llm_socket: str = "") -> Launch:
        """`command` as the sandbox runs it: behind the loopback forwarder when the task
        has secrets or egress, or an LLM channel is given (its path in the sandbox)."""
        binds: dict[str, str] = {}
        if self.environment is not None:
            variables = [f"{name}={value}" for name, value in self.environment.env().items()]
            command = ["env", *variables, *command]
            binds.update(self.environment.readonly_binds())
        if not (self.secrets or self.proxy or llm_socket):
            return Launch(command, stdin, binds)
        forwarder = ["python3", "-I", FORWARDER_IN_SANDBOX]
        binds[FORWARDER_IN_SANDBOX] = FORWARDER
        if llm_socket:
            forwarder += ["--llm", llm_socket]
        if self.proxy is not None and self._sockets is not None:
            forwarder += ["--proxy", f"{SOCKETS_IN_SANDBOX}/{PROXY_SOCKET}"]
            binds[SOCKETS_IN_SANDBOX] = self._sockets
            if os.path.isdir(CA_CERTS):
                binds[CA_CERTS] = CA_CERTS
        if self.secrets:
            forwarder.append("--env-on-stdin")
            block = json.dumps(self.secrets).encode()
            stdin = b"%d\n%s%s" % (len(block), block, stdin)
        return Launch([*forwarder, "--", *command], stdin, binds)
