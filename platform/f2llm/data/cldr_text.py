"""Labelled text in ~200 languages from CLDR, via Babel: offline, nothing downloaded.

Measuring language ID (`benchmarks/bench_langid.py` picks each language's check on it) and the
data benchmarks need text whose language is known, in more languages than any corpus we ship.
Babel carries CLDR's localized data in its wheel; each text joins several localized pieces (a
full date, territory names as a list, a relative time, a measurement, language and month names)
so it carries the language's function words and inflections ("dans 3 jours", "a cikin kwanaki
3"), not only names. What is not the language's own is dropped: Babel's root/English fallbacks
("+3 d", "12 length-kilometer"), names identical to English, and what a locale inherits from a
parent of another language (CLDR's Haitian is French throughout). CLDR's own loans stay
(Quechua months are Spanish). Name lists are not prose: detectors find them harder than sentences.
"""

from __future__ import annotations

import datetime
import random
from collections.abc import Callable
from functools import cache

from babel import Locale, dates, lists, localedata, units
from babel.core import get_global

from f2llm.data.languages import iso639_3

_UNITS = ("length-kilometer", "length-meter", "duration-hour", "duration-day", "duration-minute",
          "mass-kilogram", "volume-liter", "temperature-celsius")
_PSEUDO = frozenset({"XA", "XB", "ZZ"})  # pseudo-locale regions ("Pseudo-Accents"), unknown region
_SEPARATORS = (". ", ", ", "; ", " - ", ": ")


@cache
def _locale_ids() -> dict[str, str]:
    """ISO 639-3 code -> Babel base locale (the first identifier, sorted, naming that code)."""
    out: dict[str, str] = {}
    for ident in sorted(localedata.locale_identifiers()):
        code = iso639_3(ident)  # None for "root" and regional locales ("pt_BR")
        if code:
            out.setdefault(code, ident)
    return out


@cache
def _locale(code3: str) -> Locale:
    return Locale.parse(_locale_ids()[code3])


@cache
def _references(code3: str) -> tuple[Locale, ...]:
    """Locales a piece must differ from to be `code3`'s own: Babel's fallbacks (root, English)
    and a CLDR parent of another locale (Haitian inherits every name from fr_HT, in French)."""
    locale = _locale(code3)
    parent = get_global("parent_exceptions").get(str(locale))
    refs = [Locale.parse("root")] + ([Locale.parse("en")] if locale.language != "en" else [])
    return tuple(refs + ([Locale.parse(parent)] if parent else []))


@cache
def _names(code3: str, kind: str) -> tuple[str, ...]:
    """`code3`'s own names of `kind` ("territories", "languages", "months"): none shared with a
    reference locale (untranslated, inherited, or international like "Kenya")."""
    def table(locale: Locale) -> dict:
        return locale.months["format"]["wide"] if kind == "months" else getattr(locale, kind)

    return tuple(name for key, name in table(_locale(code3)).items() if key not in _PSEUDO
                 and all(name != table(ref).get(key) for ref in _references(code3)))


def cldr_languages(min_words: int = 200) -> list[str]:
    """ISO 639-3 codes whose Babel base locale has >= `min_words` territory + language names of
    its own (fewer: CLDR barely covers the language and its texts would repeat)."""
    return [code for code in _locale_ids()
            if len(_names(code, "territories")) + len(_names(code, "languages")) >= min_words]


def _own(code3: str, piece: Callable[[Locale], str], raw: str = "") -> str | None:
    """`piece` in `code3`'s locale, or None where a reference renders it alike or it shows a raw
    CLDR id (Babel's fallback for a missing unit pattern)."""
    text = piece(_locale(code3))
    if (raw and raw in text) or any(text == piece(ref) for ref in _references(code3)):
        return None
    return text


def cldr_phrases(code3: str, n: int, seed: int) -> list[str]:
    """`n` texts of ~60-200 characters in `code3` (a code from `cldr_languages`), deterministic
    for `seed`."""
    locale, rng = _locale(code3), random.Random(f"{code3}:{seed}")
    territories, languages, months = (list(_names(code3, kind)) for kind in ("territories", "languages", "months"))

    def pieces() -> list[str | None]:
        day = datetime.date(1950, 1, 1) + datetime.timedelta(days=rng.randrange(30_000))
        delta = rng.choice((1, -1)) * datetime.timedelta(minutes=rng.choice((3, 90, 600, 4_000, 50_000, 400_000)))
        unit, value = rng.choice(_UNITS), rng.choice((2, 3, 5, 12, 40, 250))
        return [
            _own(code3, lambda loc: dates.format_date(day, "full", locale=loc)),
            _own(code3, lambda loc: dates.format_timedelta(delta, add_direction=True, locale=loc)),
            _own(code3, lambda loc: units.format_unit(value, unit, length="long", locale=loc), raw=unit),
            lists.format_list(rng.sample(territories, 3), locale=locale) if len(territories) >= 3 else None,
            lists.format_list(rng.sample(languages, 2), locale=locale) if len(languages) >= 2 else None,
            " ".join(rng.sample(months, 2)) if len(months) >= 2 else None,
        ]

    texts = []
    for _ in range(n):
        parts = [p for p in pieces() if p]
        rng.shuffle(parts)
        text, target = "", rng.randint(60, 180)
        for part in parts + rng.sample(territories, min(len(territories), 8)):
            if len(text) >= target or (len(text) >= 60 and len(text) + len(part) > 200):
                break
            text = f"{text}{rng.choice(_SEPARATORS)}{part}" if text else part
        texts.append(text)
    return texts
