"""How long Firebase's signing certificates are trusted: as long as their
Cache-Control max-age says, within bounds, and what happens after a failed fetch.
(The certificates' use, against real tokens and the emulator, is in
tests/integration/test_identity.py.)"""

from __future__ import annotations

import pytest

from api.adapters import firebase_certs
from api.adapters.firebase_certs import CertsUnavailable, FirebaseCerts


class ScriptedCerts(FirebaseCerts):
    """FirebaseCerts whose fetches answer from a script, on a clock the test moves."""

    def __init__(self, *answers) -> None:
        self.now = 1000.0
        super().__init__("http://certs.invalid/", clock=lambda: self.now)
        self.answers = list(answers)
        self.fetches = 0

    def _fetch(self):
        self.fetches += 1
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


@pytest.mark.parametrize(
    ("cache_control", "seconds"),
    [
        ("public, max-age=19766, must-revalidate, no-transform", 19766),
        ("", firebase_certs.DEFAULT_MAX_AGE_SECONDS),
        ("max-age=0", firebase_certs.MIN_MAX_AGE_SECONDS),
        ("max-age=999999999", firebase_certs.MAX_MAX_AGE_SECONDS),
    ],
)
def test_the_cache_lifetime_is_max_age_within_bounds(cache_control, seconds):
    assert firebase_certs._max_age(cache_control) == seconds


def test_certificates_are_reused_until_their_max_age_then_fetched_again():
    certs = ScriptedCerts(({"k1": "pem1"}, 600), ({"k2": "pem2"}, 600))
    assert certs.get() == {"k1": "pem1"}
    certs.now += 599
    assert certs.get() == {"k1": "pem1"} and certs.fetches == 1
    certs.now += 2
    assert certs.get() == {"k2": "pem2"} and certs.fetches == 2


def test_after_a_failed_fetch_requests_are_refused_at_once_then_it_is_tried_again():
    certs = ScriptedCerts(CertsUnavailable("down"), ({"k1": "pem1"}, 600))
    with pytest.raises(CertsUnavailable):
        certs.get()
    certs.now += 2
    with pytest.raises(CertsUnavailable) as refused:
        certs.get()
    assert certs.fetches == 1  # no second fetch while backing off
    assert refused.value.retry_after == firebase_certs.RETRY_AFTER_SECONDS - 2
    certs.now += firebase_certs.RETRY_AFTER_SECONDS
    assert certs.get() == {"k1": "pem1"}


def test_expired_certificates_are_not_used_when_the_refresh_fails():
    certs = ScriptedCerts(({"k1": "pem1"}, 600), CertsUnavailable("down"))
    certs.get()
    certs.now += 601
    with pytest.raises(CertsUnavailable):
        certs.get()
