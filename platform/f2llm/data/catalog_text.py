"""Labelled sentences in ~90 languages from Django's gettext catalogs: offline, nothing downloaded.

Language ID is measured (`benchmarks/bench_langid.py`) on text whose language is known. CLDR
(`f2llm.data.cldr_text`) covers more languages but gives names - territories, languages, months -
often spelled alike across languages and too short to tell apart, whereas the rows validation
checks are sentences. Django ships its UI strings translated by people into ~90 locales, many
low-resource (Asturian, Breton, Sorbian, Interlingua, Ido, Kabyle, Ossetian, Udmurt, Uyghur,
Tatar, Kyrgyz, Igbo, Swahili, Sorani, Turkmen, ...): real sentences ("Enter a valid email
address.", "Please correct the errors below."). The package is only located, not imported; its
compiled catalogs (`conf/locale/*/LC_MESSAGES/django.mo`, `contrib/*/locale/*/...`) are read
with the stdlib's `gettext`. English comes from the catalogs' msgids (the source strings).

A message is kept, cleaned, when it is translated (msgstr differs from msgid; a plural's first
form), placeholders (`%(name)s`, `%s`, `{0}`), HTML tags and entities removed and whitespace
collapsed, it still has >= `MIN_LETTERS` letters (what validation reads), and no other language's
catalog has the same text (identical text carries no label: Bosnian, Croatian and Serbian share
many). A locale's script is its script subtag (`sr_Latn`: Serbian in Latin) or else the
language's main script; regions (`pt_BR`, `es_AR`) pool into their language.

The benchmark's texts are `catalog_pairs`: two sentences joined, as validation reads a retrieval
or clustering row (query + " " + passage), since a single UI string is shorter than such a row.
"""

from __future__ import annotations

import gettext
import html
import importlib.util
import random
import re
from collections import defaultdict
from functools import cache
from pathlib import Path

from babel.core import parse_locale

from f2llm.data.langid import normalise
from f2llm.data.languages import iso639_3, language, unicode_scripts

MIN_LETTERS = 20
_PLACEHOLDER = re.compile(r"%\([^)]*\)[-#0 +]*\d*(?:\.\d+)?[a-zA-Z]|%[-#0 +]*\d*(?:\.\d+)?[sdifrxXc]|%%|\{[^{}]*\}")
_TAG = re.compile(r"<[^<>]*>")
_EMPTY_PAIR = re.compile(r'“\s*”|„\s*“|«\s*»|‘\s*’|"\s*"|\(\s*\)|\[\s*\]|「\s*」|『\s*』')  # quoted placeholders
_LOOSE_SPACE = re.compile(r"\s+([.,;:!?)\]])|([(\[])\s+")  # "x ." and "( x )" once a placeholder is gone


def _package() -> Path | None:
    spec = importlib.util.find_spec("django")
    return Path(spec.origin).parent if spec and spec.origin else None


def _code_script(locale: str) -> tuple[str, str] | None:
    """Django locale ("pt_BR", "sr_Latn", "ckb") -> (ISO 639-3 code, Unicode script), as
    cldr_text maps Babel's base locales; None for what ISO 639-3 does not name."""
    try:
        lang, _, script, _ = parse_locale(locale)
    except ValueError:
        return None
    code = iso639_3(lang)
    if not code:
        return None
    scripts = unicode_scripts(script) if script else ()
    main = scripts[0] if scripts else language(code).script
    return code, main


def clean(message: str) -> str:
    """Placeholders (and the quotes or brackets left empty around them), HTML tags and entities
    removed, whitespace collapsed (none left before punctuation or inside brackets)."""
    text = _EMPTY_PAIR.sub(" ", html.unescape(_TAG.sub(" ", _PLACEHOLDER.sub(" ", message))))
    return _LOOSE_SPACE.sub(lambda m: m[1] or m[2], " ".join(text.split())).strip()


def _messages(path: Path) -> dict[str, str]:
    """A compiled catalog's translated messages: msgid -> msgstr (context dropped, plurals'
    first form), the untranslated (empty or equal to the msgid) skipped."""
    with path.open("rb") as f:
        catalog = gettext.GNUTranslations(f)._catalog  # type: ignore[attr-defined]  # no public listing
    out: dict[str, str] = {}
    for key, value in catalog.items():
        if isinstance(key, tuple):
            if key[1] != 0:
                continue
            key = key[0]
        msgid = key.split("\x04", 1)[-1]  # "context\x04msgid"
        if msgid and value and value != msgid:
            out[msgid] = value
    return out


@cache
def _sentences() -> dict[tuple[str, str], tuple[str, ...]]:
    """(ISO 639-3 code, script) -> its cleaned, unique sentences (sorted), over every catalog."""
    root = _package()
    if root is None:
        return {}
    paths = sorted([*root.glob("conf/locale/*/LC_MESSAGES/django.mo"),
                    *root.glob("contrib/*/locale/*/LC_MESSAGES/django.mo")])
    raw: dict[tuple[str, str], set[str]] = defaultdict(set)
    english = ("eng", "Latin")
    for path in paths:
        key = _code_script(path.parent.parent.name)
        if key is None:
            continue
        for msgid, msgstr in _messages(path).items():
            raw[key].add(clean(msgstr))
            raw[english].add(clean(msgid))
    owners: dict[str, set[str]] = defaultdict(set)  # text -> languages (nb and nn: one, Norwegian)
    for key, texts in raw.items():
        for text in texts:
            owners[text].add(normalise(key[0]))
    return {key: tuple(sorted(t for t in texts if sum(c.isalpha() for c in t) >= MIN_LETTERS  # \pL letters
                              and len(owners[t]) == 1))
            for key, texts in sorted(raw.items())}


def catalog_languages(min_sentences: int = 1) -> list[tuple[str, str]]:
    """(ISO 639-3 code, Unicode script) pairs with >= `min_sentences` sentences; empty when
    Django is not installed."""
    return [key for key, texts in _sentences().items() if len(texts) >= min_sentences]


def catalog_sentences(code3: str, n: int, seed: int, script: str | None = None) -> list[str]:
    """Up to `n` distinct sentences in `code3` written in `script` (default: the language's main
    script), deterministic for `seed`; fewer when the catalogs have fewer."""
    script = script or language(code3).script
    pool = list(_sentences().get((code3, script), ()))
    return random.Random(f"{code3}:{script}:{seed}").sample(pool, min(n, len(pool)))


def catalog_pairs(code3: str, n: int, seed: int, script: str | None = None) -> list[str]:
    """Up to `n` texts of two of the language's sentences joined by a space, as validation reads
    a retrieval or clustering row (query + " " + passage, then cut to `langid.DETECT_CHARS`):
    single UI strings are short (median ~34 letters), shorter than the rows language ID checks,
    and too short to tell close neighbours apart (Danish and Norwegian, Croatian and Bosnian).

    As many texts as there are sentences (up to `n`), so a language keeps the number of texts
    its sentences gave: the sentences, shuffled (deterministic for `seed`), each joined to the
    next; where there are >= 2n, every other one, so no sentence is used twice. Distinct for
    >= 2 sentences; none for fewer."""
    pool = catalog_sentences(code3, 10**9, seed, script)
    if len(pool) < 2:
        return []
    step = 2 if len(pool) >= 2 * n else 1
    return [f"{pool[j]} {pool[(j + 1) % len(pool)]}" for j in range(0, step * min(n, len(pool)), step)]
