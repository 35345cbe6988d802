"""Secrets: from Secret Manager on Google Cloud, from the environment locally.

A `*_SECRET` setting names a secret version (`projects/P/secrets/S/versions/latest`);
its value is read on first use and kept for the process's life. Rotating a key means
adding a version and restarting (deploying) the service.
"""

from __future__ import annotations

import functools


class SecretUnavailable(Exception):
    pass


@functools.cache
def read_secret(version_name: str) -> str:
    from google.api_core import exceptions as gexc
    from google.cloud import secretmanager

    client = secretmanager.SecretManagerServiceClient()
    try:
        reply = client.access_secret_version(request={"name": version_name}, timeout=10)
    except gexc.GoogleAPICallError as error:
        raise SecretUnavailable(f"cannot read secret {version_name}: {error}") from error
    return reply.payload.data.decode("utf-8").strip()
