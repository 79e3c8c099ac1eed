"""Tokens: bound to purpose and subscriber, tamper-evident, confirm tokens expire."""

from __future__ import annotations

import time
from typing import Any

import pytest
from itsdangerous import URLSafeSerializer, URLSafeTimedSerializer

from newsletter.core.tokens import (
    Purpose,
    TokenError,
    make_confirm_token,
    make_reader_token,
    make_token,
    make_verp_token,
    read_reader_token,
    read_token,
    read_verp_token,
)

KEY = "k" * 32


def token_for(purpose: Purpose, subscriber_id: int) -> str:
    """A token of this purpose: a confirmation names its newsletters."""
    if purpose is Purpose.CONFIRM:
        return make_confirm_token(KEY, subscriber_id, [1])
    return make_token(KEY, purpose, subscriber_id)


def test_a_token_reads_back_its_subscriber_and_newsletter() -> None:
    token = make_token(KEY, Purpose.UNSUBSCRIBE, 42, 7)
    claims = read_token(KEY, Purpose.UNSUBSCRIBE, token)
    assert (claims.subscriber_id, claims.newsletter_id) == (42, 7)


@pytest.mark.parametrize("made_for", list(Purpose))
@pytest.mark.parametrize("used_for", list(Purpose))
def test_a_token_of_one_purpose_fails_for_every_other(made_for: Purpose, used_for: Purpose) -> None:
    token = token_for(made_for, 1)
    if made_for is used_for:
        assert read_token(KEY, used_for, token).subscriber_id == 1
    else:
        with pytest.raises(TokenError):
            read_token(KEY, used_for, token)


def test_a_flipped_character_or_another_key_fails() -> None:
    token = make_token(KEY, Purpose.PREFERENCES, 5)
    for position in range(len(token)):
        flipped = (
            token[:position] + ("A" if token[position] != "A" else "B") + token[position + 1 :]
        )
        with pytest.raises(TokenError):
            read_token(KEY, Purpose.PREFERENCES, flipped)
    with pytest.raises(TokenError):
        read_token("another-key" * 3, Purpose.PREFERENCES, token)


@pytest.mark.parametrize("subscriber_id", [1, 42, 987_654, 10**12, 111_111_111_111])
def test_the_links_every_message_carries_are_the_serializers_own(subscriber_id: int) -> None:
    """make_token and make_reader_token sign with itsdangerous' parts, not its dumps():
    the token must be the serializer's, or, for ids zlib would shrink, one it reads."""
    unsubscribe = make_token(KEY, Purpose.UNSUBSCRIBE, subscriber_id, 3)
    preferences = make_reader_token(KEY, Purpose.PREFERENCES, subscriber_id, 2)
    for purpose, token, payload in [
        (Purpose.UNSUBSCRIBE, unsubscribe, [subscriber_id, 3]),
        (Purpose.PREFERENCES, preferences, {"s": subscriber_id, "v": 2}),
    ]:
        serializer = URLSafeSerializer(KEY, salt=purpose.value)
        assert serializer.loads(token) == payload
        made = serializer.dumps(payload)
        # Byte for byte the serializer's token, but where it compressed (a leading dot).
        assert token == made or made.startswith(".")
    assert read_token(KEY, Purpose.UNSUBSCRIBE, unsubscribe).subscriber_id == subscriber_id
    assert read_reader_token(KEY, Purpose.PREFERENCES, preferences).version == 2


def test_confirm_tokens_expire_and_unsubscribe_tokens_do_not() -> None:
    confirm = make_confirm_token(KEY, 3, [1])
    unsubscribe = make_token(KEY, Purpose.UNSUBSCRIBE, 3)
    time.sleep(1.1)
    with pytest.raises(TokenError) as caught:
        read_token(KEY, Purpose.CONFIRM, confirm, max_age=0)
    assert caught.value.expired
    assert read_token(KEY, Purpose.UNSUBSCRIBE, unsubscribe, max_age=0).subscriber_id == 3


def test_a_confirm_token_names_the_newsletters_it_was_sent_for_and_when() -> None:
    before = time.time()
    token = make_confirm_token(KEY, 42, [9, 3, 9])
    claims = read_token(KEY, Purpose.CONFIRM, token, max_age=60)
    assert (claims.subscriber_id, claims.newsletter_ids) == (42, (3, 9))
    assert (
        claims.issued_at is not None and before - 1 <= claims.issued_at.timestamp() <= time.time()
    )
    with pytest.raises(ValueError):
        make_confirm_token(KEY, 42, [])
    with pytest.raises(ValueError):  # a confirmation link without its newsletters
        make_token(KEY, Purpose.CONFIRM, 42)


@pytest.mark.parametrize(
    "payload",
    [[1, []], [1, [True]], [1, "3"], [1, 3], [True, [3]], [1, [3], 4], {"s": 1}, [1, [1] * 101]],
)
def test_a_confirm_token_of_any_other_shape_is_refused(payload: object) -> None:
    signed = URLSafeTimedSerializer(KEY, salt=Purpose.CONFIRM.value).dumps(payload)
    with pytest.raises(TokenError) as caught:
        read_token(KEY, Purpose.CONFIRM, signed, max_age=60)
    assert not caught.value.expired


def test_a_confirm_token_from_before_tokens_named_newsletters_has_expired() -> None:
    """Such a link confirmed every pending newsletter, a stranger's additions too."""
    signed = URLSafeTimedSerializer(KEY, salt=Purpose.CONFIRM.value).dumps([42])
    with pytest.raises(TokenError) as caught:
        read_token(KEY, Purpose.CONFIRM, signed, max_age=60)
    assert caught.value.expired


def test_verp_tokens_are_lower_case_and_unforgeable() -> None:
    token = make_verp_token(KEY, 12, 345)
    assert token == token.lower()
    claims = read_verp_token(KEY, token.upper())  # a relay may fold the case
    assert (claims.subscriber_id, claims.delivery_id) == (12, 345)
    with pytest.raises(TokenError):
        read_verp_token(KEY, token.replace("s12", "s13"))
    with pytest.raises(TokenError):
        read_verp_token(KEY, "s12d345-0000000000")


def test_reader_links_carry_the_token_version_and_old_preferences_links_read_as_zero() -> None:
    token = make_reader_token(KEY, Purpose.PREFERENCES, 9, 3)
    claims = read_reader_token(KEY, Purpose.PREFERENCES, token)
    assert (claims.subscriber_id, claims.version) == (9, 3)
    # A preferences link mailed before versions existed: version 0, until it is raised.
    legacy = make_token(KEY, Purpose.PREFERENCES, 9)
    assert read_reader_token(KEY, Purpose.PREFERENCES, legacy).version == 0
    with pytest.raises(TokenError):  # only preferences links had a form before versions
        read_reader_token(KEY, Purpose.EXPORT, make_token(KEY, Purpose.EXPORT, 9))
    with pytest.raises(ValueError):
        make_reader_token(KEY, Purpose.UNSUBSCRIBE, 9, 0)


def test_data_and_erasure_links_expire() -> None:
    tokens = {p: make_reader_token(KEY, p, 4, 0) for p in (Purpose.EXPORT, Purpose.ERASE)}
    for purpose, token in tokens.items():
        assert read_reader_token(KEY, purpose, token, max_age=60).subscriber_id == 4
    time.sleep(1.1)
    for purpose, token in tokens.items():
        with pytest.raises(TokenError) as caught:
            read_reader_token(KEY, purpose, token, max_age=0)
        assert caught.value.expired


def test_a_story_link_names_its_digest_variant_story_and_arm_and_nothing_else() -> None:
    from newsletter.core.tokens import LinkClaims, make_link_token, read_link_token

    token = make_link_token(KEY, 12, 34, 567, arm=1)
    assert read_link_token(KEY, token) == LinkClaims(12, 34, 567, 1)
    assert read_link_token(KEY, make_link_token(KEY, 12, 34)) == LinkClaims(12, 34, None)
    assert len(make_link_token(KEY, 10**6, 10**6, 10**6)) < 45  # short, for a URL


@pytest.mark.parametrize(
    "forge",
    [
        lambda t: t.replace("12.34.567", "12.34.568"),  # another story (an open redirect)
        lambda t: t.replace("12.34.567", "13.34.567"),
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),
        lambda t: t.rpartition(".")[0],
        lambda t: "",
        lambda t: "12.34.567.1.xxxx",
    ],
)
def test_a_story_link_cannot_be_forged_into_another(forge: Any) -> None:
    from newsletter.core.tokens import make_link_token, read_link_token

    token = make_link_token(KEY, 12, 34, 567)
    with pytest.raises(TokenError):
        read_link_token(KEY, forge(token))
    with pytest.raises(TokenError):  # nor made with another key
        read_link_token("other" * 8, token)


def test_a_copy_token_names_one_readers_delivery_and_is_signed() -> None:
    from newsletter.core.tokens import make_copy_token, make_link_token, read_copy_token

    assert read_copy_token(KEY, make_copy_token(KEY, 7, 99)) == (7, 99)
    with pytest.raises(TokenError):
        read_copy_token(KEY, make_copy_token(KEY, 7, 99).replace("7.99", "8.99"))
    with pytest.raises(TokenError):  # a story link's token is not a copy's
        read_copy_token(KEY, make_link_token(KEY, 7, 99))


def test_a_link_with_a_non_ascii_signature_is_refused_not_an_error() -> None:
    from newsletter.core.tokens import read_copy_token, read_link_token

    for read in (read_link_token, read_copy_token, read_verp_token):
        with pytest.raises(TokenError):
            read(KEY, "1.1.1.é" if read is not read_verp_token else "s1-é")
