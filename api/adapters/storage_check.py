"""Is Cloud Storage configured? Asked once as the API starts (api/wsgi.py), so a
server that cannot store files refuses to start with a message that says what to set,
rather than answering 503 to every file and losing a task's outputs.

Only the configuration is checked, not the bucket itself: a bucket that is down is a
503 the runner retries (api/errors.py), not a reason to stay down. No credential is
looked for with an emulator: the client then uses anonymous credentials.
"""

from __future__ import annotations

FIX = (
    "Locally, set STORAGE_EMULATOR_HOST to a Cloud Storage emulator and FILES_BUCKET to "
    "a bucket in it (`make dev` starts fake-gcs-server with one). Against a real bucket, "
    "provide Google credentials: GOOGLE_APPLICATION_CREDENTIALS or `gcloud auth "
    "application-default login` (on Cloud Run, the service's account)."
)


class StorageNotConfigured(RuntimeError):
    """The files bucket cannot be used as configured; the message says what to set."""


def check_storage_configuration(bucket: str | None, emulator_host: str | None) -> None:
    """:raises StorageNotConfigured: no bucket, or no emulator and no credentials."""
    if not bucket:
        raise StorageNotConfigured(f"FILES_BUCKET is empty: name the files bucket. {FIX}")
    if emulator_host:
        return
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    try:
        google.auth.default()
    except DefaultCredentialsError as error:
        raise StorageNotConfigured(
            f"No Google credentials for the files bucket {bucket!r} and no "
            f"STORAGE_EMULATOR_HOST. {FIX} ({error})"
        ) from error
