"""Comparing Vietnamese names the way a person would: NFC, case-folded, whitespace collapsed."""

from __future__ import annotations

import unicodedata


def normalise_name(name: str) -> str:
    """NFC with runs of whitespace collapsed: the form names are stored in."""
    return " ".join(unicodedata.normalize("NFC", name).split())


def comparable(name: str) -> str:
    return normalise_name(name).casefold()


def without_diacritics(name: str) -> str:
    decomposed = unicodedata.normalize("NFD", comparable(name)).replace("đ", "d")
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def masked(name: str) -> str:
    """'Nguyễn Văn An' -> 'Nguyễn V. A.': the family name and initials, for checkpoint screens."""
    parts = normalise_name(name).split(" ")
    return " ".join([parts[0], *(f"{p[0]}." for p in parts[1:])])
