"""Task tokens (DESIGN section 8): HMAC-signed, naming one task, expiring. A runner's
token opens its own task's internal endpoints and nothing else."""

from __future__ import annotations

import pytest

from api.services.task_tokens import InvalidTaskToken, issue_task_token, verify_task_token

KEY = b"k" * 32
OTHER_KEY = b"o" * 32
TASK = "0123456789abcdef01234567"
EXPIRES = 2_000_000_000
BEFORE = EXPIRES - 60


def token(task_id: str = TASK, expires_at: float = EXPIRES, key: bytes = KEY) -> str:
    return issue_task_token(key, task_id, expires_at)


def refused(token_text: str, task_id: str = TASK, now: float = BEFORE, key: bytes = KEY) -> str:
    """The reason `token_text` is refused (it must be refused with InvalidTaskToken)."""
    with pytest.raises(InvalidTaskToken) as refusal:
        verify_task_token(key, token_text, task_id, now=now)
    return str(refusal.value)


def with_part(token_text: str, index: int, value: str) -> str:
    parts = token_text.split(".")
    parts[index] = value
    return ".".join(parts)


def test_token_names_its_task_and_expiry_in_the_documented_format():
    prefix, task_id, expires, signature = token().split(".")
    assert (prefix, task_id, expires) == ("tt1", TASK, str(EXPIRES))
    assert signature and "=" not in signature


def test_token_verifies_for_its_task_before_expiry():
    verify_task_token(KEY, token(), TASK, now=BEFORE)  # no InvalidTaskToken: it verifies


def test_token_verifies_up_to_the_last_second_before_expiry():
    verify_task_token(KEY, token(), TASK, now=EXPIRES - 0.001)  # no InvalidTaskToken: it verifies


def test_token_is_refused_for_another_task():
    assert "another task" in refused(token(), task_id="ffffffffffffffffffffffff")


def test_token_is_refused_at_its_expiry():
    assert "expired" in refused(token(), now=EXPIRES)


def test_token_is_refused_after_its_expiry():
    assert "expired" in refused(token(), now=EXPIRES + 3600)


def test_token_verifies_against_the_clock_when_no_now_is_given():
    with pytest.raises(InvalidTaskToken, match="expired"):
        verify_task_token(KEY, token(expires_at=1), TASK)
    verify_task_token(
        KEY, token(expires_at=4_000_000_000), TASK
    )  # no InvalidTaskToken: it verifies


def test_token_signed_with_another_key_is_refused():
    assert "signature" in refused(token(key=OTHER_KEY))


def test_token_with_a_tampered_signature_is_refused():
    good = token()
    signature = good.split(".")[3]
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    assert "signature" in refused(with_part(good, 3, flipped))


def test_token_with_the_task_id_swapped_is_refused():
    other = "ffffffffffffffffffffffff"
    assert "signature" in refused(with_part(token(), 1, other), task_id=other)


def test_token_with_an_extended_expiry_is_refused():
    assert "signature" in refused(with_part(token(), 2, str(EXPIRES + 10**6)))


def test_token_with_another_prefix_is_refused():
    assert "malformed" in refused(with_part(token(), 0, "tt2"))


def test_token_with_the_signature_of_another_token_is_refused():
    stolen = token(task_id="ffffffffffffffffffffffff").split(".")[3]
    assert "signature" in refused(with_part(token(), 3, stolen))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "tt1",
        "tt1.",
        "tt1...",
        f"tt1.{TASK}.{EXPIRES}",
        f"tt1.{TASK}.{EXPIRES}.sig.extra",
        f"Bearer tt1.{TASK}.{EXPIRES}.sig",
        "not a token at all",
    ],
)
def test_malformed_token_is_refused(text):
    refused(text)


@pytest.mark.parametrize(
    "text",
    [f"tt1.{TASK}.{EXPIRES}.\u00e9t\u00e9", f"tt1.{TASK}\u00e9.{EXPIRES}.sig", "\u00ff" * 10],
)
def test_token_with_non_ascii_characters_is_refused_not_an_error(text):
    # An Authorization header may carry any latin-1 character; refusing it must not
    # raise anything but InvalidTaskToken (else the internal endpoints answer 500).
    refused(text)


def test_valid_token_checked_against_a_non_ascii_task_id_is_refused_not_an_error():
    refused(token(), task_id=TASK + "\u00e9")
