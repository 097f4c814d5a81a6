"""What text the chat accepts from a client: one definition for every use case and adapter.

Every storage adapter must store and give back, unchanged, any text these rules accept
(PostgreSQL ``text`` cannot hold U+0000, SQLite can: refusing NUL here is what keeps them
in agreement), and every use case applies them before anything is published or stored.

Refused everywhere (a 422 ``validation_error``, the first offending code point named):

- control characters (Unicode category Cc: C0, DEL, C1), except newline and tab in a
  message body; a body's CR LF and lone CR become LF;
- lone surrogates (category Cs): not text, and no UTF-8 encoder writes them;
- bidirectional embeddings, overrides and isolates U+202A..U+202E and U+2066..U+2069:
  they reorder what a reader sees against what is stored ("Trojan Source",
  CVE-2021-42574). The marks U+200E, U+200F and U+061C stay allowed in bodies: RTL
  text needs them and they reorder nothing around them.

Names (display name, room name) are also NFKC-normalised, their runs of whitespace made
one space, trimmed, and refuse every format character (category Cf: zero-width space and
joiners, soft hyphen, bidi marks, tags), line and paragraph separators, and the blank
"filler" letters that render as nothing. A body or name must show at least one character:
not only whitespace, format characters, combining marks or fillers.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

from chat_domain.errors import InvalidInput

BIDI_CONTROLS = frozenset(
    [chr(c) for c in range(0x202A, 0x202F)] + [chr(c) for c in range(0x2066, 0x206A)]
)
# Letters (category Lo) and a mark that render as blank space: names made of them pass
# for empty, and they are the usual trick to look like someone else's name plus nothing.
BLANK_FILLERS = frozenset("\u115f\u1160\u3164\uffa0\u2800\u034f")
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Mn", "Me", "Zs", "Zl", "Zp"})

# Ids are made by the server (UUIDs); what a client names in a path or a payload either
# has this shape or cannot exist, and is answered "not found" without asking storage.
ID_MAX = 64
_ID = re.compile(rf"[A-Za-z0-9._:\-]{{1,{ID_MAX}}}")
# What a username can start with: a user search for anything else finds no one.
_USERNAME_PREFIX = re.compile(r"[a-z0-9_.\-]{0,32}")

# The common look-alikes of a..z among Cyrillic, Greek, Armenian and Latin letters, after
# casefolding (NFKC already folds fullwidth, mathematical and other compatibility forms).
# Usernames are ASCII, so mapping these is what a display name needs to pass for one.
LOOKALIKES = str.maketrans(
    # The look-alikes, escaped (the letters themselves would be a trap for a reader), ...
    (
        "\u0430\u0441\u0501\u0435\u04bb\u0456\u0458\u043a"  # Cyrillic
        "\u04cf\u043e\u0440\u051b\u0455\u0443\u051d\u0445"  # Cyrillic
        "\u03b1\u03b2\u03b5\u03b7\u03b9\u03ba\u03bc"  # Greek
        "\u03bd\u03bf\u03c1\u03c4\u03c5\u03c7\u03c9"  # Greek
        "\u0585\u057d\u0570\u0581"  # Armenian
        "\u0131\u0251\u0261\u0269\u028b"  # Latin
    ),
    # ... and the a..z letter each one passes for, in the same order.
    (
        "acdehijk"  # Cyrillic
        "lopqsywx"  # Cyrillic
        "abeniku"  # Greek
        "voptuxw"  # Greek
        "ouhg"  # Armenian
        "iagiu"  # Latin
    ),
)


def _refused_anywhere(ch: str) -> bool:
    category = unicodedata.category(ch)
    return category == "Cs" or category == "Cc" or ch in BIDI_CONTROLS


# What a body refuses, as one character class: Cc is exactly U+0000..U+001F and
# U+007F..U+009F, Cs U+D800..U+DFFF. Every send is checked, so this runs in C: a
# per-character unicodedata loop cost 30 us for 50 characters and 2 ms for 4000.
_REFUSED_IN_BODY = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069]"
)


def _refused_in_name(ch: str) -> bool:
    category = unicodedata.category(ch)
    return _refused_anywhere(ch) or category in ("Cf", "Zl", "Zp") or ch in BLANK_FILLERS


def _visible(ch: str) -> bool:
    return not (
        ch.isspace() or ch in BLANK_FILLERS or unicodedata.category(ch) in _INVISIBLE_CATEGORIES
    )


def _code_point(ch: str) -> str:
    return f"U+{ord(ch):04X}"


def _refuse(field: str, ch: str, what: str) -> InvalidInput:
    # The code point, not the character: echoing it back would carry it further.
    return InvalidInput(f"{field}: {_code_point(ch)} is not allowed ({what})")


def _check_refused(field: str, text: str, refused: Callable[[str], bool]) -> None:
    for ch in text:
        if refused(ch):
            category = unicodedata.category(ch)
            what = {
                "Cc": "a control character",
                "Cs": "a lone surrogate",
                "Cf": "an invisible format character",
            }.get(category, "an invisible or direction-changing character")
            if ch in BIDI_CONTROLS:
                what = "a bidirectional override or isolate"
            raise _refuse(field, ch, what)


def message_body(raw: str, max_length: int, field: str = "body") -> str:
    """A message body as stored: line endings made LF, trimmed, 1..``max_length`` code
    points, showing at least one character, nothing refused (see the module)."""
    body = raw.replace("\r\n", "\n").replace("\r", "\n")
    refused = _REFUSED_IN_BODY.search(body)
    if refused is not None:
        _check_refused(field, refused[0], _refused_anywhere)
    body = body.strip()
    if not 1 <= len(body) <= max_length:
        raise InvalidInput(f"{field}: must be 1..{max_length} characters")
    if not any(_visible(ch) for ch in body):
        raise InvalidInput(f"{field}: must show at least one character")
    return body


def name_text(raw: str, max_length: int, field: str) -> str:
    """A display or room name: NFKC, whitespace runs made one space, trimmed, at most
    ``max_length`` code points (counted after NFKC, which may lengthen it), nothing refused.
    An empty result is returned as is: the caller decides whether a name may be empty."""
    _check_refused(field, raw, _refused_in_name)
    name = " ".join(unicodedata.normalize("NFKC", raw).split())
    _check_refused(field, name, _refused_in_name)
    if len(name) > max_length:
        raise InvalidInput(f"{field}: must be at most {max_length} characters")
    if name and not any(_visible(ch) for ch in name):
        raise InvalidInput(f"{field}: must show at least one character")
    return name


def lookalike_key(name: str) -> str:
    """What a name reads as, for telling whether it passes for a username: NFKC, casefold,
    combining marks and invisible characters dropped, common look-alike letters mapped to
    a..z, whitespace and a leading "@" trimmed: "alice" in fullwidth letters, "ALICE",
    "@alice", "alice" with a Cyrillic a, or with an accent on its e, all read as "alice"."""
    folded = unicodedata.normalize("NFD", unicodedata.normalize("NFKC", name).casefold())
    kept = "".join(ch for ch in folded if _visible(ch) or ch == " ")
    return kept.translate(LOOKALIKES).strip().removeprefix("@").strip()


def client_token(raw: str, max_length: int, field: str) -> str:
    """An opaque string a client chooses (``client_msg_id``): 1..``max_length`` code points,
    no control, surrogate, format or bidi character (it is part of a derived message id),
    something visible in it, as in a name."""
    if not 1 <= len(raw) <= max_length:
        raise InvalidInput(f"{field}: must be 1..{max_length} characters")
    _check_refused(field, raw, _refused_in_name)
    if not any(_visible(ch) for ch in raw):
        raise InvalidInput(f"{field}: must show at least one character")
    return raw


def is_id(value: str) -> bool:
    """Whether ``value`` has the shape of an id this service makes; anything else names
    nothing, so the caller answers "not found" without a storage call."""
    return _ID.fullmatch(value) is not None


def username_prefix(raw: str, field: str = "q") -> str | None:
    """A user search's prefix, lowercased and trimmed; refused text raises, and text that no
    username can start with is None (the search finds no one, storage is not asked)."""
    _check_refused(field, raw, _refused_in_name)
    prefix = raw.strip().lower()
    return prefix if _USERNAME_PREFIX.fullmatch(prefix) else None
