"""Languages by ISO 639-3 code, with the Unicode script their text is written in.

The script lets validation check text for languages an identifier does not know, and lets the
sample data and reports be grouped by script. Only a hand-checked table is kept here; a code not
in it is still accepted when `pycountry`-style validation is not required by the caller.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass


@dataclass(frozen=True)
class Language:
    code: str  # ISO 639-3
    name: str
    script: str  # ISO 15924 name
    low_resource: bool = False


_LANGS = [
    Language("eng", "English", "Latin"),
    Language("fra", "French", "Latin"),
    Language("deu", "German", "Latin"),
    Language("spa", "Spanish", "Latin"),
    Language("tur", "Turkish", "Latin"),
    Language("vie", "Vietnamese", "Latin"),
    Language("rus", "Russian", "Cyrillic"),
    Language("ara", "Arabic", "Arabic"),
    Language("hin", "Hindi", "Devanagari"),
    Language("zho", "Chinese", "Han"),
    Language("jpn", "Japanese", "Japanese"),
    Language("kor", "Korean", "Hangul"),
    Language("ell", "Greek", "Greek"),
    Language("tha", "Thai", "Thai"),
    Language("ben", "Bengali", "Bengali"),
    Language("tam", "Tamil", "Tamil"),
    Language("swa", "Swahili", "Latin", True),
    Language("yor", "Yoruba", "Latin", True),
    Language("hau", "Hausa", "Latin", True),
    Language("zul", "Zulu", "Latin", True),
    Language("ibo", "Igbo", "Latin", True),
    Language("som", "Somali", "Latin", True),
    Language("que", "Quechua", "Latin", True),
    Language("amh", "Amharic", "Ethiopic", True),
    Language("khm", "Khmer", "Khmer", True),
    Language("nep", "Nepali", "Devanagari", True),
]
LANGUAGES: dict[str, Language] = {lang.code: lang for lang in _LANGS}

# First word of a letter's Unicode name -> script; Japanese mixes kana and Han.
_SCRIPT_OF_NAME = {
    "LATIN": "Latin", "CYRILLIC": "Cyrillic", "ARABIC": "Arabic", "DEVANAGARI": "Devanagari",
    "CJK": "Han", "HIRAGANA": "Japanese", "KATAKANA": "Japanese", "HANGUL": "Hangul",
    "GREEK": "Greek", "THAI": "Thai", "BENGALI": "Bengali", "TAMIL": "Tamil",
    "ETHIOPIC": "Ethiopic", "KHMER": "Khmer",
}


def dominant_script(text: str) -> str | None:
    """The script most of the text's letters belong to (None when it has no letters).

    Kana anywhere marks Japanese, since Japanese text is mostly Han by letter count.
    """
    counts: dict[str, int] = {}
    for ch in text:
        if not ch.isalpha():
            continue
        head = unicodedata.name(ch, "").split(" ", 1)[0]
        script = _SCRIPT_OF_NAME.get(head, "Other")
        counts[script] = counts.get(script, 0) + 1
    if not counts:
        return None
    if counts.get("Japanese"):
        return "Japanese"
    return max(counts, key=counts.__getitem__)
