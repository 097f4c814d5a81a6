"""The text rules of chat_domain.text: what every use case refuses before any port is called,
and what it accepts unchanged (tests/contract/test_storage.py stores that on every adapter)."""

from __future__ import annotations

import unicodedata
from typing import Any, cast

import pytest

from chat_domain.entities import (
    DISPLAY_NAME_MAX,
    MESSAGE_BODY_MAX,
    ROOM_NAME_MAX,
    normalise_body,
    normalise_display_name,
    normalise_room_name,
)
from chat_domain.errors import InvalidInput, NotFound, Unauthorized
from chat_domain.text import is_id, lookalike_key, message_body
from chat_domain.usecases.auth import LogIn, RegisterUser, SearchUsers
from chat_domain.usecases.blocks import BlockUser, UnblockUser
from chat_domain.usecases.messages import DeleteMessage, EditMessage, SendMessage
from chat_domain.usecases.rooms import (
    AddMember,
    CreateGroupRoom,
    OpenDirectRoom,
    RemoveMember,
    TransferOwnership,
)
from tests.support.text_corpus import (
    ACCEPTED_BODIES,
    ACCEPTED_NAMES,
    REFUSED_EVERYWHERE,
    REFUSED_IN_NAMES_ONLY,
)
from tests.unit.conftest import PASSWORD, World


class PortsMustNotBeCalled:
    """Stands in for every port of a use case: any use of it fails the test."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"a port was used ({name}) before the text was checked")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a port was used before the text was checked")


NO_PORT: Any = cast(Any, PortsMustNotBeCalled())


def cases(*tables: dict[str, str]) -> Any:
    return pytest.mark.parametrize(
        "text", [pytest.param(text, id=name) for table in tables for name, text in table.items()]
    )


@cases(REFUSED_EVERYWHERE)
async def test_a_body_that_breaks_the_rules_is_refused_before_any_port(text: str) -> None:
    with pytest.raises(InvalidInput) as sent:
        await SendMessage(NO_PORT, NO_PORT, NO_PORT, NO_PORT)("u", "r", text)
    with pytest.raises(InvalidInput) as edited:
        await EditMessage(NO_PORT, NO_PORT, NO_PORT)("u", "r", "m", text)
    for error in (sent.value, edited.value):
        assert error.code == "validation_error"
        assert error.message.startswith("body: ")
        # The offending character is named by its code point, never echoed back.
        assert not any(ch in error.message for ch in text if not ch.isascii())
        assert "\x00" not in error.message


@cases(REFUSED_EVERYWHERE, REFUSED_IN_NAMES_ONLY)
async def test_a_room_name_that_breaks_the_rules_is_refused_before_any_port(text: str) -> None:
    with pytest.raises(InvalidInput, match=r"^name: "):
        await CreateGroupRoom(NO_PORT, NO_PORT, NO_PORT, NO_PORT)("u", text, [])


@cases(
    {k: v for k, v in REFUSED_EVERYWHERE.items() if v.strip()},  # blank: the username is used
    REFUSED_IN_NAMES_ONLY,
)
async def test_a_display_name_that_breaks_the_rules_is_refused_before_any_port(
    text: str,
) -> None:
    with pytest.raises(InvalidInput, match=r"^display_name: "):
        await RegisterUser(NO_PORT, NO_PORT, NO_PORT, NO_PORT)("mallory", PASSWORD, text)


@pytest.mark.parametrize(
    "text",
    [
        *("x\x00y", "a\x1b", "a\x7f", "\x85", "\ud800", "a\u202eb", "a\u2066b", "\u200b"),
        *("a\u00adb", "a\nb", "a\tb", "", "k" * 65, "   ", "\u0301", "\u3164"),
    ],
)
async def test_a_client_msg_id_with_refused_text_is_refused_before_any_port(text: str) -> None:
    with pytest.raises(InvalidInput, match=r"^client_msg_id: "):
        await SendMessage(NO_PORT, NO_PORT, NO_PORT, NO_PORT)("u", "r", "hi", text)


@pytest.mark.parametrize("username", ["a\x00b", "alice\x00", "\u202ealice", "\ud800", "a" * 64])
async def test_login_with_a_username_no_account_can_have_is_unauthorized_without_a_lookup(
    username: str,
) -> None:
    with pytest.raises(Unauthorized) as refused:
        await LogIn(NO_PORT, NO_PORT, NO_PORT)(username, PASSWORD)
    # The same answer as for an unknown user or a wrong password: nothing to probe.
    assert refused.value.message == "invalid username or password"


async def test_user_search_refuses_controls_and_finds_no_one_for_impossible_prefixes() -> None:
    search = SearchUsers(NO_PORT)
    for refused in ("a\x00", "\x1b", "a\u202e", "\ud800"):
        with pytest.raises(InvalidInput, match=r"^q: "):
            await search(refused)
    for impossible in ("\u00e9", "a b", "%", "a" * 33, "\U0001f600"):
        assert await search(impossible) == []


@pytest.mark.parametrize("bad_id", ["a\x00b", "\x00", "", "a b", "a/b", "\u202e", "x" * 65])
async def test_ids_that_cannot_exist_are_not_found_before_any_port(bad_id: str) -> None:
    assert not is_id(bad_id)
    with pytest.raises(NotFound):
        await SendMessage(NO_PORT, NO_PORT, NO_PORT, NO_PORT)("u", bad_id, "hi")
    with pytest.raises(NotFound):
        await BlockUser(NO_PORT, NO_PORT, NO_PORT)("u", bad_id)
    await UnblockUser(NO_PORT, NO_PORT, NO_PORT)("u", bad_id)  # blocks nobody, asks nobody


async def test_ids_that_cannot_exist_are_not_found_or_unknown_in_every_use_case(
    world: World,
) -> None:
    alice, bob = await world.user("alice"), await world.user("bob")
    room = await world.room(alice, bob)
    message = await world.message(alice, room)
    bad = "a\x00b"
    with pytest.raises(NotFound, match="room"):
        await EditMessage(world.storage, world.notifier, world.clock)(alice.id, bad, "m", "x")
    with pytest.raises(NotFound, match="message"):
        await EditMessage(world.storage, world.notifier, world.clock)(alice.id, room.id, bad, "x")
    with pytest.raises(NotFound, match="message"):
        await DeleteMessage(world.storage, world.notifier)(alice.id, room.id, bad)
    with pytest.raises(NotFound, match="user"):
        await AddMember(world.storage, world.notifier, world.clock)(alice.id, room.id, bad)
    with pytest.raises(NotFound, match="member"):
        await RemoveMember(world.storage, world.notifier, world.clock)(alice.id, room.id, bad)
    with pytest.raises(InvalidInput, match="member_ids"):
        await CreateGroupRoom(world.storage, world.notifier, world.clock, world.ids)(
            alice.id, "r", [bad]
        )
    with pytest.raises(InvalidInput, match="member_ids"):
        await OpenDirectRoom(world.storage, world.notifier, world.clock, world.ids)(alice.id, [bad])
    with pytest.raises(NotFound, match="member"):
        await TransferOwnership(world.storage, world.notifier)(alice.id, room.id, bad)
    assert message.seq == 1  # and the room is as it was


@cases(ACCEPTED_BODIES)
def test_accepted_bodies_come_back_unchanged(text: str) -> None:
    assert normalise_body(text) == text


@cases(ACCEPTED_NAMES)
def test_accepted_names_come_back_unchanged(text: str) -> None:
    assert normalise_display_name(text, "someone") == text
    assert normalise_room_name(text) == text


def test_names_are_nfkc_with_one_space_between_words_and_counted_after_normalising() -> None:
    assert normalise_display_name("  \uff21\uff4c\uff49\uff43\uff45 \u3000 B  ", "u") == "Alice B"
    assert normalise_room_name("cafe\u0301") == "caf\u00e9"
    assert normalise_display_name("\U0001f600" * DISPLAY_NAME_MAX, "u") == "\U0001f600" * 64
    assert normalise_room_name("\U0001f389" * ROOM_NAME_MAX) == "\U0001f389" * ROOM_NAME_MAX
    # U+FDFA is one code point that NFKC spells in 18: the limit applies to what is stored.
    with pytest.raises(InvalidInput, match="at most 64"):
        normalise_display_name("\ufdfa" * 4, "u")
    assert normalise_display_name(None, "alice") == normalise_display_name("  ", "alice")


def test_a_body_keeps_newlines_and_tabs_and_makes_line_endings_lf() -> None:
    assert normalise_body("  one\r\ntwo\rthree\n\tfour  ") == "one\ntwo\nthree\n\tfour"


@pytest.mark.parametrize(
    "name",
    [
        "alice",
        "Alice",
        "ALICE",
        "@alice",
        " alice ",
        "\uff41\uff4c\uff49\uff43\uff45",  # fullwidth
        "\u0430lice",  # Cyrillic a
        "\u0251lice",  # Latin alpha
        "al\u0456ce",  # Cyrillic i
        "alic\u0301e",  # combining accent
        "\U0001d41a\U0001d425\U0001d422\U0001d41c\U0001d41e",  # mathematical bold
    ],
)
def test_look_alikes_of_a_username_read_as_it(name: str) -> None:
    assert lookalike_key(name) == "alice"


async def test_a_display_name_that_passes_for_another_users_username_is_refused(
    world: World,
) -> None:
    await world.user("alice")
    register = RegisterUser(world.storage, world.hasher, world.clock, world.ids)
    for name in ("alice", "Alice", "@alice", "\u0430lice", "\uff41\uff4c\uff49\uff43\uff45"):
        with pytest.raises(InvalidInput, match=r"^display_name: looks like another user"):
            await register("mallory", PASSWORD, name)
    # A name of its own, or one's own username in any case, is fine.
    assert (await register("mallory", PASSWORD, "Alice Liddell")).display_name == "Alice Liddell"
    assert (await register("bob", PASSWORD, "BOB")).display_name == "BOB"


def test_the_body_rule_refuses_exactly_controls_but_lf_and_tab_surrogates_and_bidi() -> None:
    """The body check is one regular expression (it runs on every send); it must say what
    the rule says: for every code point of the BMP, where all refused ones are, and a
    spread of the others (up to U+10FFFF)."""
    bidi = {*range(0x202A, 0x202F), *range(0x2066, 0x206A)}
    for code in [*range(0x10000), *range(0x10000, 0x110000, 0x101), 0x10FFFF]:
        ch = chr(code)
        refused = ch not in "\n\t\r" and (  # CR becomes LF
            unicodedata.category(ch) in ("Cc", "Cs") or code in bidi
        )
        try:
            message_body(f"a{ch}b", MESSAGE_BODY_MAX)
        except InvalidInput as error:
            assert refused, hex(code)
            assert not refused or f"U+{code:04X}" in error.message, (hex(code), error.message)
        else:
            assert not refused, hex(code)
