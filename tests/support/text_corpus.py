"""Tricky text, for every layer's tests: what the domain refuses (chat_domain.text) and what it
accepts and every adapter must give back unchanged. Keys name the case (test ids)."""

from __future__ import annotations

from chat_domain.entities import DISPLAY_NAME_MAX, MESSAGE_BODY_MAX, ROOM_NAME_MAX

# Text no use case may accept: each is refused with a validation error, whatever the field.
REFUSED_EVERYWHERE = {
    "NUL": "x\x00y",
    "NUL alone": "\x00",
    "C0 control": "a\x01b",
    "escape": "a\x1b[31mred",
    "DEL": "a\x7fb",
    "C1 control": "a\x9bb",
    "next line (C1)": "a\x85b",
    "lone high surrogate": "\ud800",
    "lone low surrogate": "a\udfffb",
    "right-to-left override": "abc\u202edcba",
    "left-to-right embedding": "a\u202ab",
    "pop directional formatting": "a\u202cb",
    "right-to-left isolate": "a\u2067b\u2069",
    "first strong isolate": "a\u2068b",
    "zero-width space only": "\u200b",
    "zero-width mix only": "\u200b\u200c\u200d\u2060\ufeff",
    "whitespace and zero-width only": " \u200b \u00a0 ",
    "hangul filler only": "\u3164",
    "braille blank only": "\u2800",
    "combining mark only": "\u0301",
    "empty": "",
    "spaces only": "   ",
}
# Also refused in names (display name, room name), though fine in a body.
REFUSED_IN_NAMES_ONLY = {
    "newline": "a\nb",
    "tab": "a\tb",
    "zero-width space inside": "al\u200bice",
    "zero-width joiner inside": "a\u200db",
    "soft hyphen": "a\u00adb",
    "right-to-left mark": "a\u200fb",
    "line separator": "a\u2028b",
    "hangul filler inside": "alice\u3164",
}

# Accepted, and given back exactly as sent (already trimmed and normalised).
ACCEPTED_BODIES = {
    "Hebrew with a right-to-left mark": "\u05e9\u05dc\u05d5\u05dd \u200f\u05e2\u05d5\u05dc\u05dd",
    "Arabic": "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645",
    "4-byte emoji and a ZWJ family": (
        "\U0001f600 \U0001f44d\U0001f3fd \U0001f468\u200d\U0001f469\u200d\U0001f467"
    ),
    "combining marks": "e\u0301 n\u0303 Z\u0336\u0334a\u0335",
    "newline and tab inside": "line one\n\tline two",
    "CJK": "\u4f60\u597d\uff0c\u4e16\u754c",
    "no-break space inside": "100\u00a0km",
    "private use": "\ue000 logo",
    "quotes and markup": "' OR 1=1 -- <script>alert(1)</script> %s%n \\",
    "longest, all 4-byte": "\U0001f600" * MESSAGE_BODY_MAX,
}
ACCEPTED_NAMES = {
    "Arabic": "\u0645\u062d\u0645\u062f",
    "Hebrew": "\u05d3\u05d5\u05d3",
    "composed accents": "Zo\u00eb Fran\u00e7ois",
    "CJK": "\u674e\u5c0f\u9f8d",
    "emoji": "\U0001f389 party",
}
# The longest names, all 4-byte characters: a limit counts code points, not bytes.
LONGEST_DISPLAY_NAME = "\U0001f600" * DISPLAY_NAME_MAX
LONGEST_ROOM_NAME = "\U0001f389" * ROOM_NAME_MAX
