"""Decoding and canonical forms applied to web request fields before rules match them.

The raw line is kept unchanged for the audit log and evidence; only the detection view is
normalised, so one rule covers every encoding of the same payload.
"""

from __future__ import annotations

import html
from urllib.parse import unquote, unquote_plus

import re2

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False

MAX_DECODE_ROUNDS = 3
"""Rounds of URL decoding; triple encoding is the deepest seen in scanner payloads."""

_APACHE_ESCAPE = re2.compile(r"\\(x[0-9a-fA-F]{2}|.)", _OPTIONS)
_IIS_UNICODE = re2.compile(r"%u([0-9a-fA-F]{4})", _OPTIONS)
# Overlong UTF-8 spellings of ASCII (%c0%ae for ".", %e0%80%af for "/", up to six bytes).
# Strict decoders reject them, but old IIS, Tomcat and PHP builds decoded them, so traversal
# and filter-evasion payloads use them. The last byte is often not a valid continuation byte
# (%c0%2e); those decoders kept only its low six bits, and so does this view.
_OVERLONG = re2.compile(
    r"%([cC][01]|[eE]0%[89aAbB][0-9a-fA-F]|[fF]0%8[0-9a-fA-F]%[89aAbB][0-9a-fA-F]"
    r"|[fF]8%80%80%[89aAbB][0-9a-fA-F]|[fF][cC]%80%80%80%[89aAbB][0-9a-fA-F])%([0-9a-fA-F]{2})",
    _OPTIONS,
)
_OVERLONG_LEADS = ("%c", "%C", "%e", "%E", "%f", "%F")
"""How every `_OVERLONG` match starts; text without one of them skips the substitution."""
_OVERLONG_RAW = re2.compile(r"[\xc0\xc1][\x80-\xff]", _OPTIONS)
# Look-alike characters that some back ends fold to ASCII: fullwidth forms, the division
# slash and the set minus used as path separators, and curly or prime apostrophes that
# best-fit character conversion turns into a SQL quote.
_LOOKALIKES = str.maketrans(
    {
        "\uff0e": ".",
        "\uff0f": "/",
        "\uff3c": "\\",
        "\u2215": "/",
        "\u2216": "\\",
        "\u2044": "/",
        "\uff1c": "<",
        "\uff1e": ">",
        "\u2024": ".",
        "\ufe52": ".",
        "\u2018": "'",
        "\u2019": "'",
        "\u2032": "'",
        "\uff07": "'",
        "\u02bc": "'",
    }
)
# (?s): a comment may span the CR and LF an attacker puts inside it.
_SQL_COMMENT = re2.compile(r"(?s)/\*.*?\*/", _OPTIONS)
_CONTROL = re2.compile(r"[\x00-\x08\x0a-\x1f\x7f]", _OPTIONS)
_WHITESPACE = re2.compile(r"[\s\x0b]+", _OPTIONS)


def _apache_unescape(match: re2._Match) -> str:
    escaped = str(match.group(1))
    if escaped.startswith("x") and len(escaped) == 3:
        return chr(int(escaped[1:], 16))
    return {"n": "\n", "r": "\r", "t": "\t", "v": "\x0b"}.get(escaped, escaped)


def unescape_apache(text: str) -> str:
    """Undo the backslash escapes Apache and nginx write for quotes and unprintable bytes."""
    if "\\" not in text:
        return text
    return str(_APACHE_ESCAPE.sub(_apache_unescape, text))


def url_decode(text: str, *, plus_as_space: bool) -> str:
    """Percent-decode until the text stops changing, at most `MAX_DECODE_ROUNDS` times."""
    for _ in range(MAX_DECODE_ROUNDS):
        if "%" not in text and not (plus_as_space and "+" in text):
            break
        if "%u" in text or "%U" in text:
            text = _IIS_UNICODE.sub(lambda match: chr(int(match.group(1), 16)), text)
        if any(lead in text for lead in _OVERLONG_LEADS):
            text = _OVERLONG.sub(_overlong_escape, text)
        decoded = unquote_plus(text) if plus_as_space else unquote(text)
        if decoded == text:
            break
        text = decoded
        plus_as_space = False  # a literal '+' decoded from %2B is a plus, not a space
    return text


def _overlong_escape(match: re2._Match) -> str:
    lead = match.group(1)
    escapes = [lead[:2]] + [part for part in lead[2:].split("%") if part] + [match.group(2)]
    values = [int(escape, 16) for escape in escapes]
    # The lead byte of a 2-, 3- or 4-byte UTF-8 sequence keeps 5, 4 or 3 payload bits.
    lead_mask = {2: 0x1F, 3: 0x0F}.get(len(values), 0x07)
    code = values[0] & lead_mask
    for value in values[1:]:
        code = (code << 6) | (value & 0x3F)
    if code >= 0x80:
        return str(match.group(0))
    return f"%{code:02x}"


def _overlong_raw(match: re2._Match) -> str:
    text = match.group(0)
    return chr(((ord(text[0]) & 0x1F) << 6 | (ord(text[1]) & 0x3F)) & 0x7F)


def _visible_control(match: re2._Match) -> str:
    return f"\\x{ord(match.group(0)):02x}"


def canonical(text: str) -> str:
    """Decode HTML entities, show control bytes as `\\xNN`, drop SQL comments.

    Case is folded to lower case and runs of whitespace become one space.
    """
    if "&" in text:
        text = html.unescape(text)
    if "/*" in text:
        text = _SQL_COMMENT.sub(" ", text)
    # Each substitution below is skipped when a cheap check shows it cannot change the text:
    # both of the first two only touch non-ASCII characters, and isprintable() is False for
    # every control character and for each whitespace character but the space.
    if not text.isascii():
        text = _OVERLONG_RAW.sub(_overlong_raw, text).translate(_LOOKALIKES)
    if not text.isprintable():
        text = _CONTROL.sub(_visible_control, text)
    text = text.lower()
    if "  " in text or not text.isprintable():
        text = _WHITESPACE.sub(" ", text)
    return text.strip()


def normalise_target(target: str) -> str:
    """Normalise a request target: path and query decoded, `+` as space in the query only."""
    target = unescape_apache(target)
    path, separator, query = target.partition("?")
    path = url_decode(path, plus_as_space=False)
    query = url_decode(query, plus_as_space=True) if separator else ""
    return canonical(path + separator + query)


def normalise_header(value: str) -> str:
    """Normalise a logged header value such as the User-Agent or Referer."""
    if value == "-":
        return ""
    return canonical(url_decode(unescape_apache(value), plus_as_space=False))
