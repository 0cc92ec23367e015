"""A word and pattern screen for unsafe text, behind std/filters' drop_unsafe and std/validators' is_safe.

Text is read a sentence at a time. A sentence is unsafe when it matches a
pattern of one of these categories:

- ``violence``        threats against a person ("I will kill you"), asking how to kill,
                      poison or kidnap someone, plans to attack a school, a crowd, a place
                      of worship
- ``self_harm``       wanting to die, ending one's life, suicide methods, lethal doses,
                      cutting or hurting oneself
- ``sexual_minors``   any sexual word in the same sentence as a word for a child or a
                      minor (a "12-year-old", "underage", "schoolgirl" …); no exceptions
- ``weapons``         how to make or build bombs, explosives, guns without serial numbers,
                      silencers, chemical or biological weapons; converting a rifle to
                      fully automatic fire
- ``hate``            calls to kill or expel a protected group, and calling a group vermin,
                      subhuman, parasites …

It is a screen, not a judge: it looks for the phrasings above and so misses
what is said otherwise, and it flags some fiction and news. Slurs are not
listed. For more, plug in a classifier: ``register_classifier(fn)`` (or the
environment variable ``FMFLOW_SAFETY_CLASSIFIER=module:attr``, imported from
the current folder or the Python path) adds a callable that receives one
sentence and returns the names of the categories it finds (an empty
collection, ``None`` or ``False`` when the sentence is safe; ``True`` counts as
the category ``classifier``). A sentence is unsafe when the screen or any
classifier says so.
"""

from __future__ import annotations

import bisect
import os
import re
import threading
from dataclasses import dataclass
from typing import Any, Callable

CLASSIFIER_ENV = "FMFLOW_SAFETY_CLASSIFIER"
CATEGORIES = ("violence", "self_harm", "sexual_minors", "weapons", "hate")
REMOVED = "[REMOVED]"

_I = re.IGNORECASE


def _words(*alternatives: str) -> str:
    return "(?:" + "|".join(alternatives) + ")"


_PERSON = _words("you", "him", "her", "them", "everyone", "all of you", "somebody", "someone", "a person",
                 r"my (?:wife|husband|boss|teacher|neighbou?r|ex|mother|father|brother|sister|classmates?)",
                 "people", r"your \w+")
_PLACE = _words("school", "church", "mosque", "synagogue", "temple", "mall", "office", "stadium", "concert",
                "crowd", "parade", "hospital", "campus", "classroom", "subway", "airport")
_GROUP = _words("jews", "jewish people", "muslims", "christians", "blacks", "black people", "whites", "white people",
                "asians", "arabs", "mexicans", "immigrants", "migrants", "refugees", "gays", "gay people", "lesbians",
                "trans people", "transgender people", "women", "hindus", "sikhs", "roma", "gypsies", "africans",
                "latinos", "hispanics", "chinese people", "indians", "disabled people", "the disabled", "catholics",
                "buddhists", "atheists", "homosexuals")
_WEAPON = _words("bomb", "pipe ?bomb", "explosives?", "ied", "molotov(?: cocktail)?", "grenade", "napalm", "thermite",
                 "silencer", "suppressor", "ghost gun", "untraceable (?:gun|firearm)", "zip gun", "nerve agent",
                 "chemical weapon", "bio-?weapon", "biological weapon", "dirty bomb", "detonator", "car bomb")
_MINOR = _words("child", "children", "kids?", "minors?", "underage", "under-age", "pre-?teens?", "toddlers?", "infants?",
                "school ?girls?", "school ?boys?", r"little (?:girls?|boys?)", r"(?:[1-9]|1[0-7])[- ](?:years?|yrs?)[- ]olds?",
                r"(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|"
                r"seventeen)[- ]years?[- ]olds?", "young teens?", "lolis?", "shota")
_SEXUAL = _words("sex", "sexual", "sexually", "sexy", "nudes?", "naked", "porn", "porno", "pornographic", "pornography",
                 "explicit", "erotic", "intercourse", "molest(?:ed|ing|ation)?", "fondl(?:e|ed|ing)", "aroused",
                 "orgasm", "genitals?", "nsfw", "lewd", "csam", "rape[ds]?")

@dataclass(frozen=True)
class Rule:
    """Unsafe when every pattern matches one sentence.

    ``needs`` are lower-case words that any match holds, one of each group:
    only sentences holding them are matched against the patterns (a pass of
    ``str.find`` per word costs far less than a pattern scan of the text).
    """

    category: str
    patterns: tuple[re.Pattern, ...]
    needs: tuple[tuple[str, ...], ...]


def _rule(category: str, pattern: str, *needs: tuple[str, ...]) -> Rule:
    return Rule(category, (re.compile(pattern, re.IGNORECASE),), needs)


_GROUP_WORDS = ("jew", "muslim", "christian", "black", "white", "asian", "arab", "mexican", "migrant", "refugee",
                "gay", "lesbian", "trans", "women", "hindu", "sikh", "roma", "gypsies", "african", "latino",
                "hispanic", "chinese", "indian", "disabled", "catholic", "buddhist", "atheist", "homosexual")
_KILL_WORDS = ("kill", "murder", "stab", "shoot", "strangle", "behead", "slaughter", "hunt", "beat")
_WEAPON_WORDS = ("bomb", "explosive", "ied", "molotov", "grenade", "napalm", "thermite", "silencer", "suppressor",
                 "gun", "firearm", "nerve agent", "weapon", "detonator")

SCREEN: tuple[Rule, ...] = (
    _rule("violence", rf"\b(?:i(?:'m| am)? (?:going to|gonna|will)|i'll|we(?:'re| are) going to|we will) "
          rf"(?:kill|murder|stab|shoot|strangle|behead|slaughter|hunt down|beat) {_PERSON}\b", _KILL_WORDS),
    _rule("violence", rf"\bhow (?:to|do i|can i|would i|should i) (?:kill|murder|poison|strangle|torture|kidnap|"
          rf"abduct) {_PERSON}\b", ("kill", "murder", "poison", "strangle", "tortur", "kidnap", "abduct")),
    _rule("violence", rf"\b(?:shoot|bomb|blow) up (?:the|a|my|our|this|that) {_PLACE}\b", (" up ",)),
    _rule("violence", rf"\b(?:plan(?:ning)?|going) to (?:attack|shoot|bomb|stab) (?:the|a|my|our) {_PLACE}\b",
          ("attack", "shoot", "bomb", "stab")),
    _rule("self_harm", r"\b(?:kill|hang|shoot|poison|hurt|cut|harm|starve) (?:myself|yourself)\b",
          ("myself", "yourself")),
    _rule("self_harm", r"\b(?:end|take) (?:my|your) (?:own )?life\b", ("life",)),
    _rule("self_harm", r"\bcommit(?:ting)? suicide\b|\bsuicide (?:methods?|notes?|plans?|pacts?)\b", ("suicide",)),
    _rule("self_harm", r"\b(?:want|wanna|going|ready) to die\b|\bhow (?:to|do i|can i) (?:die|overdose)\b",
          ("die", "overdose")),
    _rule("self_harm", r"\blethal dose\b|\bcutting myself\b|\bself-harm(?:ing)? (?:tips|methods)\b",
          ("lethal", "cutting", "self-harm")),
    Rule("sexual_minors", (re.compile(rf"\b{_SEXUAL}\b", re.IGNORECASE), re.compile(rf"\b{_MINOR}\b", re.IGNORECASE)),
         (("sex", "nude", "naked", "porn", "explicit", "erotic", "intercourse", "molest", "fondl", "aroused",
           "orgasm", "genital", "nsfw", "lewd", "csam", "rape"),)),
    _rule("weapons", rf"\bhow (?:to|do i|can i|do you|would i) (?:make|build|assemble|construct|manufacture|"
          rf"3d[- ]print|cook) (?:a |an |my own |your own )?(?:homemade |working |untraceable )?{_WEAPON}\b",
          _WEAPON_WORDS, ("how",)),
    _rule("weapons", rf"\b(?:recipe|instructions?|steps?|guide|tutorial|blueprints?) (?:for|to make|to build|"
          rf"on making) (?:a |an )?(?:homemade )?{_WEAPON}\b", _WEAPON_WORDS),
    _rule("weapons", r"\b(?:synthesi[sz]e|make|produce|weaponi[sz]e|culture) (?:sarin|vx|tabun|soman|ricin|anthrax|"
          r"mustard gas|botulinum(?: toxin)?|nerve agents?)\b",
          ("sarin", "vx", "tabun", "soman", "ricin", "anthrax", "mustard", "botulinum", "nerve")),
    _rule("weapons", r"\bconvert(?:ing)? (?:an? |my |the )?(?:ar-?15|ak-?47|glock|rifle|pistol|semi-?auto\w*) "
          r"(?:to|into) (?:full[- ]auto\w*|fully automatic|automatic)\b", ("convert",), ("auto",)),
    _rule("weapons", r"\b(?:tatp|acetone peroxide|ammonium nitrate|petn|rdx) (?:bomb|explosive|detonator|recipe|"
          r"synthesis)\b", ("tatp", "peroxide", "nitrate", "petn", "rdx")),
    _rule("hate", rf"\b(?:kill|exterminate|gas|eradicate|eliminate|lynch|hang|shoot|burn|wipe out) (?:all|every|"
          rf"all the|all of the|the) {_GROUP}\b", _GROUP_WORDS,
          ("kill", "extermin", "gas", "eradicat", "eliminat", "lynch", "hang", "shoot", "burn", "wipe")),
    _rule("hate", rf"\b{_GROUP} (?:should|must|deserve to|need to|ought to) (?:all )?(?:die|be killed|"
          rf"be exterminated|be gassed|be eradicated|be wiped out|burn|hang|be shot|be deported)\b", _GROUP_WORDS,
          ("should", "must", "deserve", "need", "ought")),
    _rule("hate", rf"\b{_GROUP} (?:are|is) (?:nothing but |just |all )?(?:vermin|subhuman|sub-human|animals|"
          rf"parasites|cockroaches|rats|a disease|a plague|an infestation|not human|savages|a cancer)\b",
          _GROUP_WORDS, ("vermin", "human", "animals", "parasites", "cockroaches", "rats", "disease", "plague",
                         "infestation", "savages", "cancer")),
    _rule("hate", rf"\b(?:death to|gas the|exterminate the) {_GROUP}\b", _GROUP_WORDS,
          ("death to", "gas the", "exterminate the")),
)

# A sentence: up to and including its end mark, or up to a line break.
_SENTENCE = re.compile(r"[^\n.!?…。！？]*(?:[.!?…。！？]+[\"'”’)\]]*|\n|$)")

_classifiers: list[Callable[[str], Any]] = []
_lock = threading.Lock()
_env_loaded: dict[str, Callable[[str], Any]] = {}


def register_classifier(classifier: Callable[[str], Any] | str) -> None:
    """Add a classifier: a callable, or "module:attr" naming one (imported from the current folder)."""
    function = _load(classifier) if isinstance(classifier, str) else classifier
    if not callable(function):
        raise TypeError(f"a safety classifier must be callable, got {type(function).__name__}")
    with _lock:
        _classifiers.append(function)


def clear_classifiers() -> None:
    """Forget the classifiers added by register_classifier."""
    with _lock:
        _classifiers.clear()


def sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence with any text in it."""
    return [(m.start(), m.end()) for m in _SENTENCE.finditer(text) if m.group().strip()]


def unsafe_sentences(text: str) -> dict[int, list[str]]:
    """Index (in ``sentences(text)``) → categories, for each unsafe sentence.

    A category's patterns run only on the sentences that hold one of its
    trigger words; classifiers see every sentence, one at a time.
    """
    spans = sentences(text)
    lowered = _lower(text)
    starts = [start for start, _ in spans]
    found: dict[int, list[str]] = {}
    memo: dict[str, set[int]] = {}

    def holding(words: tuple[str, ...]) -> set[int]:
        for word in words:
            if word not in memo:
                memo[word] = _holding(lowered, starts, word)
        return set().union(*(memo[word] for word in words))

    for rule in SCREEN:
        candidates = set.intersection(*(holding(words) for words in rule.needs))
        for index in sorted(candidates):
            start, end = spans[index]
            names = found.setdefault(index, [])
            if rule.category not in names and all(p.search(text, start, end) for p in rule.patterns):
                names.append(rule.category)
    for classifier in _active_classifiers():
        for index, (start, end) in enumerate(spans):
            for name in _classifier_says(classifier, text[start:end]):
                if name not in found.setdefault(index, []):
                    found[index].append(name)
    return {index: names for index, names in found.items() if names}


def unsafe_categories(text: str) -> list[str]:
    """Every category found in any sentence of ``text``, screen categories first."""
    names = {name for found in unsafe_sentences(text).values() for name in found}
    return [c for c in CATEGORIES if c in names] + sorted(names - set(CATEGORIES))


def scrub(text: str, replacement: str = REMOVED) -> str:
    """``text`` with each unsafe sentence replaced (the spaces and line breaks around it kept)."""
    unsafe = unsafe_sentences(text)
    if not unsafe:
        return text
    out, last = [], 0
    for index, (start, end) in enumerate(sentences(text)):
        if index in unsafe:
            sentence = text[start:end]
            lead = sentence[:len(sentence) - len(sentence.lstrip())]
            trail = sentence[len(sentence.rstrip()):]
            out.append(text[last:start] + lead + replacement + trail)
            last = end
    out.append(text[last:])
    return "".join(out)


def _holding(lowered: str, starts: list[int], word: str) -> set[int]:
    """Indexes of the sentences (starting at ``starts``) in which ``word`` occurs."""
    found: set[int] = set()
    at = lowered.find(word)
    while at != -1:
        index = bisect.bisect_right(starts, at) - 1
        if index >= 0:
            found.add(index)
        # on to the next sentence: one occurrence is enough
        at = lowered.find(word, max(at + 1, starts[index + 1] if index + 1 < len(starts) else len(lowered)))
    return found


def _lower(text: str) -> str:
    """``text`` in lower case, each character staying at its place."""
    lowered = text.lower()
    if len(lowered) == len(text):
        return lowered
    return "".join(ch.lower() if len(ch.lower()) == 1 else ch for ch in text)


def _active_classifiers() -> list[Callable[[str], Any]]:
    with _lock:
        active = list(_classifiers)
    target = os.environ.get(CLASSIFIER_ENV, "").strip()
    if target:
        with _lock:
            if target not in _env_loaded:
                _env_loaded[target] = _load(target)
            active.append(_env_loaded[target])
    return active


def _load(target: str) -> Callable[[str], Any]:
    from fmflow.runtime.pyimport import load_callable

    if ":" not in target:
        raise ValueError(f"a safety classifier is named 'module:attr', got {target!r} ({CLASSIFIER_ENV})")
    return load_callable(target, os.getcwd())


def _classifier_says(classifier: Callable[[str], Any], sentence: str) -> list[str]:
    verdict = classifier(sentence)
    if verdict is None or verdict is False:
        return []
    if verdict is True:
        return ["classifier"]
    if isinstance(verdict, str):
        return [verdict]
    try:
        return [str(name) for name in verdict]
    except TypeError:
        raise TypeError(f"a safety classifier must return category names, a bool or None; "
                        f"got {type(verdict).__name__}") from None
