"""Operator commands on the app's Flask CLI:

    flask --app api keys create --user alice --name laptop   # prints the key, once
    flask --app api keys list --user alice
    flask --app api keys revoke ak_Xy12AbC9q --user alice      # id, id start or prefix

They use the settings from the environment, like the server (GOOGLE_CLOUD_PROJECT,
FIRESTORE_EMULATOR_HOST for the emulator), whatever AUTH_MODE is: keys can be made
before the server is switched to AUTH_MODE=apikey.
"""

from __future__ import annotations

import os

import click
from flask import current_app
from flask.cli import AppGroup

from api.errors import ApiError

SHORT_ID_CHARS = 16

keys = AppGroup("keys", help="Create, list and revoke API keys (AUTH_MODE=apikey).")


def loading_for_a_command() -> bool:
    """True while the `flask` command builds the app to run one of its commands other
    than `flask run`. `flask --app api` calls `create_app()` with no arguments; this
    is how create_app knows not to start the background dispatcher for a one-shot
    command such as `keys create`, which must not launch or settle anyone's tasks.
    (`flask` sets FLASK_RUN_FROM_CLI for every command, and loads the app inside its
    click context; gunicorn and the tests have neither.)"""
    if os.environ.get("FLASK_RUN_FROM_CLI") != "true":
        return False
    context = click.get_current_context(silent=True)
    return context is not None and context.command.name != "run"


def _api_keys():
    return current_app.extensions["agent_platform"].api_keys


def _short_id(record: dict) -> str:
    # The id is the key's SHA-256 (64 hex digits); its start names it well enough, and
    # `keys revoke` takes any unique start of 8 or more.
    return record["id"][:SHORT_ID_CHARS]


def _when(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%SZ") if value is not None else "-"


@keys.command("create")
@click.option("--user", required=True, help="The user id the key acts as.")
@click.option("--name", default="", help="A label to recognise the key by.")
def create_key(user: str, name: str) -> None:
    """Create a key for USER. The key alone goes to stdout, shown this once; only its
    SHA-256 hash is stored."""
    try:
        key, record = _api_keys().create(user, name)
    except ApiError as error:
        raise click.ClickException(error.message) from None
    click.echo(key)
    click.echo(
        f"Created API key {record['prefix']}... (id {_short_id(record)}) for {user}. "
        "Store it now: it cannot be shown again.",
        err=True,
    )


@keys.command("list")
@click.option("--user", required=True, help="Whose keys to list.")
def list_keys(user: str) -> None:
    """List USER's keys: prefix, name, created, last used, revoked (never the key)."""
    rows = [("PREFIX", "NAME", "CREATED", "LAST USED", "REVOKED", "ID")]
    for record in _api_keys().list(user):
        rows.append(
            (
                record["prefix"],
                record.get("name") or "-",
                _when(record.get("createdAt")),
                _when(record.get("lastUsedAt")),
                _when(record.get("revokedAt")),
                _short_id(record),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


@keys.command("revoke")
@click.argument("key_ref", metavar="KEY_ID_OR_PREFIX")
@click.option("--user", required=True, help="The key's owner.")
def revoke_key(key_ref: str, user: str) -> None:
    """Revoke one of USER's keys, named by its id (or its first 8+ characters) or its
    prefix. Requests with it get 401 from then on."""
    try:
        record = _api_keys().revoke(user, key_ref)
    except ApiError as error:
        raise click.ClickException(error.message) from None
    click.echo(
        f"Revoked {record['prefix']}... (id {_short_id(record)}) at {_when(record['revokedAt'])}."
    )


def init_app(app) -> None:
    app.cli.add_command(keys)
