"""Languages by ISO 639-3 code, with the Unicode script their text is written in.

The script lets validation check text for languages the identifier does not know, and lets
reports group languages by script. The table is hand-checked and covers the bundled sample; a
language not in it is still accepted everywhere, its script just cannot be checked.
"""

from __future__ import annotations

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

# Letter ranges of each script, for vectorised counting (pandas/pyarrow str.count with RE2).
SCRIPT_RANGES = {
    "Latin": "A-Za-z\u00C0-\u00D6\u00D8-\u00F6\u00F8-\u024F\u1E00-\u1EFF",
    "Cyrillic": "\u0400-\u052F", "Arabic": "\u0600-\u06FF\u0750-\u077F\u08A0-\u08FF\uFB50-\uFDFF\uFE70-\uFEFF",
    "Devanagari": "\u0900-\u097F", "Han": "\u3400-\u4DBF\u4E00-\u9FFF\uF900-\uFAFF",
    "Japanese": "\u3040-\u30FF", "Hangul": "\u1100-\u11FF\u3130-\u318F\uAC00-\uD7AF",
    "Greek": "\u0370-\u03FF\u1F00-\u1FFF", "Thai": "\u0E00-\u0E7F", "Bengali": "\u0980-\u09FF",
    "Tamil": "\u0B80-\u0BFF", "Ethiopic": "\u1200-\u139F\u2D80-\u2DDF", "Khmer": "\u1780-\u17FF\u19E0-\u19FF",
}
