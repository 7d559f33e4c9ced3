"""Text items: which encoding, how long, and a snippet for list views.

The encoding is decided in this order: a byte-order mark (UTF-8, UTF-16, UTF-32), strict
UTF-8 (most text today), then charset-normalizer's best guess over the first MiB (legacy
code pages such as GB18030, Shift_JIS or Windows-1252). Bytes that decode to control
characters (NUL and friends, beyond tab/newline/carriage return) are binary, not text.
"""

from __future__ import annotations

import codecs
import re

from annostack.domain.models import CamelModel

SNIPPET_CHARACTERS = 500
GUESS_BYTES = 1 << 20
BINARY_SHARE = 0.01  # more control characters than this: not text
BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


class TextError(ValueError):
    """The input is not text in an encoding we recognise; the message says why."""


class TextInfo(CamelModel):
    kind: str = "text"
    encoding: str
    bytes: int
    characters: int
    lines: int
    snippet: str


def _encoding(data: bytes) -> str:
    for bom, name in BOMS:
        if data.startswith(bom):
            return name
    try:
        data.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(data[:GUESS_BYTES]).best()
    if best is None:
        raise TextError("not text: no encoding decodes it")
    return str(best.encoding)


CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")  # C0 controls but tab, LF, FF, CR


def _controls(text: str) -> int:
    return len(CONTROL.findall(text, 0, GUESS_BYTES))


def read_text(data: bytes) -> TextInfo:
    """Encoding, length (characters and lines) and the first SNIPPET_CHARACTERS characters."""
    if not data:
        return TextInfo(encoding="utf-8", bytes=0, characters=0, lines=0, snippet="")
    encoding = _encoding(data)
    try:
        text = data.decode(encoding)
    except (UnicodeDecodeError, LookupError) as error:
        raise TextError(f"not text in {encoding}: {error}") from error
    if _controls(text) > BINARY_SHARE * min(len(text), GUESS_BYTES):
        raise TextError("binary data, not text (control characters)")
    lines = text.count("\n") + (0 if text.endswith("\n") else 1)
    return TextInfo(
        encoding=encoding,
        bytes=len(data),
        characters=len(text),
        lines=lines,
        snippet=text[:SNIPPET_CHARACTERS],
    )
