"""What free text typed into the registry may hold (names, addresses,
origins, unit numbers, codes): one line of text a person can see. Pure, no
I/O, so the API's input models, the registry's own checks, the pages and the
imports can all apply the same rule.

Refused, each named by its code point and never by repeating the text:

- control characters (C0, DEL, C1) and line or paragraph separators: the
  value is one line on a page, in a CSV report and in a log line, and a
  newline or an escape sequence there forges lines or colours;
- the characters that change the writing direction (U+202A-U+202E embeddings
  and overrides, U+2066-U+2069 isolates, the marks U+200E, U+200F, U+061C):
  with them a name or an address shows other than it reads (the "Trojan
  Source" trick);
- every other invisible format character (zero-width space, word joiner,
  byte-order mark, soft hyphen, tags, ...): they make two texts that look
  the same differ, so one landlord or building could appear twice;
- unpaired surrogates, which JSON's ``\\ud800`` escapes can produce and no
  database can store as UTF-8.

Kept: the zero-width (non-)joiners U+200C and U+200D, which shape Arabic-script
(Uyghur) and Indic names and build emoji, and U+180E, part of traditional
Mongolian spelling; private-use characters, with which older systems spell
rare characters of Chinese names (生僻字)."""

from __future__ import annotations

import unicodedata

_SHAPING = frozenset({"\u200c", "\u200d", "\u180e"})
BIDI_CONTROLS = frozenset(chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C))


def _code_point(char: str) -> str:
    return f"U+{ord(char):04X}"


def hidden_character(value: str) -> str | None:
    """Why ``value`` is not one line of visible text (English, as the API's
    details are), or None when it is."""
    for char in value:
        category = unicodedata.category(char)
        if char in BIDI_CONTROLS:
            return (f"contains {_code_point(char)}, a character that changes the writing direction "
                    "(the text would show other than it reads)")
        if category in ("Cc", "Zl", "Zp"):
            return f"contains {_code_point(char)}, a control character or line break: one line of text only"
        if category == "Cs":
            return f"contains {_code_point(char)}, half of a character (an unpaired surrogate)"
        if category == "Cf" and char not in _SHAPING:
            return f"contains {_code_point(char)}, an invisible character"
    return None


def has_substance(value: str) -> bool:
    """At least one letter, digit or private-use character: a name of only
    dashes or joiners names nothing."""
    return any(unicodedata.category(char)[0] in "LN" or unicodedata.category(char) == "Co" for char in value)


def compatible(value: str) -> str:
    """NFKC: full-width ４０１ and Ｂ-１２ become 401 and B-12. For what
    identifies something (codes, unit numbers, phones, dates), so that a
    phone keyboard's full-width form is the same value and not a look-alike
    second one. Not for names: a name stays as it was written."""
    return unicodedata.normalize("NFKC", value).strip()
