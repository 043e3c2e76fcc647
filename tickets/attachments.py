"""Attachments citizens send with a request: which files are accepted, judged by what they
are (their first bytes), not by the name or type the browser claims; and their limits.

Accepted: PDF, PNG, JPEG, plain text (UTF-8), and office documents (OpenDocument, Office Open
XML: zip files that say so in their first entry). Anything else (executables, HTML, SVG with
its scripts, archives) is refused: a citizen's file is later opened by an operator.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

MAX_FILES = 5  # per message
MAX_FILE_BYTES = 10 * 1024 * 1024
MAX_TOTAL_BYTES = 20 * 1024 * 1024  # all the files of one message together
SNIFF_BYTES = 128  # how much of a file `content_type` needs to see

# Office Open XML: a zip whose first entry is one of these (Word and LibreOffice differ),
# typed by its extension; macro-enabled ones (.docm, .xlsm) are not on the list.
_OOXML_FIRST = (b"[Content_Types].xml", b"_rels/.rels", b"docProps/app.xml")
_OOXML = {".docx": "wordprocessingml.document", ".xlsx": "spreadsheetml.sheet",
          ".pptx": "presentationml.presentation"}
_ODF = re.compile(rb"application/vnd\.oasis\.opendocument\.(text|spreadsheet|presentation)")


class Refused(ValueError):
    """A file that is not accepted, and why: said to the citizen, so in Italian."""


@dataclass(frozen=True)
class Limits:
    files: int = MAX_FILES
    file_bytes: int = MAX_FILE_BYTES
    total_bytes: int = MAX_TOTAL_BYTES


def content_type(head: bytes, name: str) -> str:
    """The file's type from its first bytes (at least SNIFF_BYTES of them when it is that
    long), or Refused."""
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"PK\x03\x04") and len(head) >= 30:
        name_length = int.from_bytes(head[26:28], "little")
        entry = head[30:30 + name_length]
        if entry == b"mimetype" and (found := _ODF.search(head)):  # OpenDocument
            return f"application/vnd.oasis.opendocument.{found.group(1).decode()}"
        ext = "." + name.lower().rsplit(".", 1)[-1]
        if entry in _OOXML_FIRST and ext in _OOXML:
            return f"application/vnd.openxmlformats-officedocument.{_OOXML[ext]}"
        raise Refused("gli archivi compressi non sono accettati: allega i documenti")
    if name.lower().endswith(".txt") and _text(head):
        return "text/plain; charset=utf-8"
    raise Refused("sono accettati solo PDF, immagini (PNG, JPEG), documenti (OpenDocument, "
                  "Word, Excel) e file di testo")


def _text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:  # cut in the middle of a character at the end: fine
        if exc.start < len(head) - 3:
            return False
        text = head[:exc.start].decode("utf-8")
    return not any(unicodedata.category(c) == "Cc" and c not in "\r\n\t\f" for c in text)


def clean_name(name: str) -> str:
    """A file name safe to show and to offer for download: no folders, no control
    characters, at most 120 characters (the extension kept)."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(c for c in base if unicodedata.category(c)[0] != "C").strip(" .")
    if len(base) > 120:
        stem, dot, ext = base.rpartition(".")
        base = (stem[:110] + dot + ext[:9]) if dot and len(ext) <= 9 else base[:120]
    return base or "allegato"
