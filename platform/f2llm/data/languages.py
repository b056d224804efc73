"""Languages by ISO 639-3 code: validity, name, the Unicode scripts their text is written in.

Codes are checked against ISO 639-3 as pycountry ships it (`xyz` is refused; `fil` is Filipino;
special codes `und`, `mul`, `zxx`, `mis` name no language and are refused too). A language's
scripts come from CLDR's likely subtags (Babel: `yo` -> `yo_Latn_NG`, `ja` -> `ja_Jpan_JP`),
mapped from ISO 15924 codes to Unicode script names, which RE2 (pyarrow's regex engine) knows
as `\\p{Name}` classes; so any language CLDR knows gets a script check, not just a hand table.

`Language.low_resource` splits the language-ID benchmark's figures: every language outside
`HIGH_RESOURCE`, Joshi et al. (2020) classes 4-5 (the "winners" and "underdogs" with abundant
labelled and unlabelled data).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import pycountry

SPECIAL = frozenset({"und", "mul", "zxx", "mis"})
# Composite ISO 15924 codes: the Unicode scripts their text mixes.
_COMPOSITE = {
    "Jpan": ("Han", "Hiragana", "Katakana"), "Kore": ("Hangul", "Han"), "Hans": ("Han",), "Hant": ("Han",),
    "Hanb": ("Han", "Bopomofo"),
}
HIGH_RESOURCE = frozenset(
    "eng spa fra deu jpn zho ara rus kor hin vie por ita nld pol swe ces tur fin hun cat fas heb "
    "ukr ell ron dan nor ind msa srp hrv bul slk tha ben".split()
)


class UnknownLanguage(ValueError):
    pass


@dataclass(frozen=True)
class Language:
    code: str  # ISO 639-3
    name: str
    script: str  # the main script's Unicode name (Latin, Ethiopic, Han, ...); "" if CLDR has none
    scripts: tuple[str, ...]  # every Unicode script the language's text is written in

    @property
    def low_resource(self) -> bool:
        return self.code not in HIGH_RESOURCE


def check_code(code: str) -> str:
    """`code` if it is an ISO 639-3 language code, else UnknownLanguage saying why."""
    if not isinstance(code, str) or len(code) != 3 or not code.isascii() or not code.islower():
        raise UnknownLanguage(f"{code!r} is not an ISO 639-3 code (three lower-case letters)")
    if code in SPECIAL:
        raise UnknownLanguage(f"{code!r} is a special ISO 639-3 code and names no language")
    if pycountry.languages.get(alpha_3=code) is None:
        raise UnknownLanguage(f"{code!r} is not in ISO 639-3")
    return code


def iso639_3(code: str) -> str | None:
    """An ISO 639-1 or 639-3 code as ISO 639-3 (`sw` -> swa, `fil` -> fil), None if neither."""
    if len(code) == 2:
        return getattr(pycountry.languages.get(alpha_2=code), "alpha_3", None)
    try:
        return check_code(code)
    except UnknownLanguage:
        return None


def unicode_scripts(iso15924: str) -> tuple[str, ...]:
    """ISO 15924 code -> Unicode script names (`Ethi` -> Ethiopic, `Jpan` -> Han, Hiragana, Katakana)."""
    from fontTools import unicodedata as ud

    if iso15924 in _COMPOSITE:
        return _COMPOSITE[iso15924]
    name = ud.script_name(iso15924, default=None)
    return (name.replace(" ", "_"),) if name else ()


@cache
def language(code: str) -> Language:
    """The language `code` names (an ISO 639-3 code; see check_code)."""
    from babel.core import get_global

    entry = pycountry.languages.get(alpha_3=check_code(code))
    likely = get_global("likely_subtags")
    tag = likely.get(getattr(entry, "alpha_2", None) or code) or likely.get(code) or ""
    parts = tag.split("_")
    scripts = unicode_scripts(parts[1]) if len(parts) > 1 else ()
    return Language(code, entry.name, scripts[0] if scripts else "", scripts)


def find(code: str) -> Language | None:
    """The language `code` names, or None where it is not an ISO 639-3 language code."""
    try:
        return language(code)
    except UnknownLanguage:
        return None
