"""The store's verbs for user secrets (ADR 0016): an owner's listing document
(names, sizes, times; bounded in number) and one document per sealed value beside
it, always written and deleted together in one transaction."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from api.adapters.firestore_paths import secret_value_path, user_secrets_path
from api.models.documents import SealedValue, SecretEntry, SecretValueDoc, UserSecretsDoc


class SecretLimitReached(Exception):
    """The owner already has as many secrets as allowed."""


class UserSecretStore:
    # FirestoreStore's
    client: Any
    _contended: Callable[[Callable[[], Any]], Any]

    def list_user_secrets(self, owner: str) -> dict[str, SecretEntry]:
        snapshot = self.client.document(user_secrets_path(owner)).get()
        return dict((snapshot.to_dict() or {}).get("secrets") or {}) if snapshot.exists else {}

    def put_user_secret(
        self, owner: str, name: str, entry: SecretEntry, value: SecretValueDoc, max_count: int
    ) -> bool:
        """Store (or replace) one secret; True when it is new.

        :raises SecretLimitReached: it is new and the owner has `max_count` already.
        """
        from google.cloud import firestore

        client = self.client
        listing_ref = client.document(user_secrets_path(owner))

        @firestore.transactional
        def put(transaction: Any) -> bool:
            snapshot = listing_ref.get(transaction=transaction)
            listing = cast(UserSecretsDoc, snapshot.to_dict() or {"secrets": {}})
            known = dict(listing.get("secrets") or {})
            created = name not in known
            if created and len(known) >= max_count:
                raise SecretLimitReached(f"at most {max_count} secrets")
            if not created:
                entry["createdAt"] = known[name]["createdAt"]
            known[name] = entry
            transaction.set(listing_ref, {"secrets": known})
            transaction.set(client.document(secret_value_path(owner, name)), dict(value))
            return created

        return cast(bool, self._contended(lambda: put(client.transaction(max_attempts=1))))

    def delete_user_secret(self, owner: str, name: str) -> bool:
        """Remove one secret; False when the owner has none of that name."""
        from google.cloud import firestore

        client = self.client
        listing_ref = client.document(user_secrets_path(owner))

        @firestore.transactional
        def delete(transaction: Any) -> bool:
            snapshot = listing_ref.get(transaction=transaction)
            known = dict((snapshot.to_dict() or {}).get("secrets") or {})
            if name not in known:
                return False
            del known[name]
            transaction.set(listing_ref, {"secrets": known})
            transaction.delete(client.document(secret_value_path(owner, name)))
            return True

        return cast(bool, self._contended(lambda: delete(client.transaction(max_attempts=1))))

    def get_sealed_secrets(self, owner: str, names: list[str]) -> dict[str, SealedValue]:
        """The sealed values of those of `names` the owner has."""
        refs = [self.client.document(secret_value_path(owner, name)) for name in names]
        found: dict[str, SealedValue] = {}
        for snapshot in self.client.get_all(refs):
            if snapshot.exists:
                found[snapshot.id] = cast(SecretValueDoc, snapshot.to_dict())["sealed"]
        return found
