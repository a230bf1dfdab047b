"""Value generators for the synthetic facts: large combinatorial pools, split by a hash.

Every generated string belongs to exactly one split, decided by a CRC-32 of its case-folded text
(:func:`value_split`), so the train and test pools are disjoint for *every* kind at once and a
string can never be a training value under one kind and a test value under another. Pools are
large (thousands to millions of values per kind: syllable names, syllable cities, 10–9999,
day–month–year dates ...), so no prior over values learned in training can answer a test question.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable, Iterable

SPLITS = ("train", "test")

_ONSETS = ("b", "br", "d", "dr", "f", "g", "gr", "h", "j", "k", "kr", "l", "m", "n", "p", "pr",
           "r", "s", "st", "t", "tr", "v", "z", "ch", "sh", "th")
_VOWELS = ("a", "e", "i", "o", "u", "ae", "ia", "ou")
_CODAS = ("", "", "", "n", "r", "l", "s", "m", "nd", "rt")
_NAME_ENDS = ("a", "o", "in", "el", "is", "ar", "en", "ina", "ek", "on")
_PET_ENDS = ("y", "ie", "o", "ix", "kins", "bo", "zy", "moo")
_CITY_SUFFIXES = ("ford", "haven", "burg", "ton", "ville", "mouth", "field", "stad", "port", "wick",
                  "dale", "bridge", "mere", "gate")
_CITY_PREFIXES = ("Port", "New", "San", "Lake", "Fort", "North", "Upper", "East")
_LEVELS = ("", "senior ", "junior ", "lead ", "trainee ", "chief ")
_FIELDS = ("soil", "glass", "bridge", "satellite", "wind turbine", "bee", "coral", "railway",
           "museum", "tax", "wine", "forest", "software", "water", "wildlife", "climate", "textile",
           "furniture", "marine", "solar panel", "orchard", "ceramics", "bicycle", "elevator",
           "aircraft", "payroll", "library", "seed", "pipeline", "robotics", "vaccine", "harbour",
           "mining", "theatre", "insurance", "cheese", "radio", "violin", "dental", "traffic",
           "archive", "perfume", "tunnel", "ferry", "printing", "coffee", "cable", "greenhouse")
_ROLES = ("engineer", "inspector", "designer", "technician", "analyst", "consultant", "researcher",
          "manager", "surveyor", "mechanic", "curator", "planner", "auditor", "specialist")
_SHADES = ("pale", "deep", "dusty", "bright", "dark", "soft", "neon", "muted", "warm", "cool",
           "smoky", "pastel", "rich", "light", "burnt", "electric")
_COLOURS = ("crimson", "teal", "olive", "amber", "lilac", "coral", "indigo", "mustard", "sage",
            "plum", "turquoise", "ochre", "maroon", "peach", "cobalt", "mint", "rust", "lavender",
            "charcoal", "saffron", "jade", "magenta", "khaki", "cyan", "ivory", "emerald", "scarlet",
            "taupe", "periwinkle", "tangerine")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December")
_TASTES = ("smoky", "spicy", "creamy", "crispy", "sweet", "tangy", "roasted", "grilled", "braised",
           "garlic", "lemon", "honey", "ginger", "pepper", "herb")
_INGREDIENTS = ("lentil", "mushroom", "pumpkin", "chickpea", "salmon", "duck", "tofu", "aubergine",
                "beetroot", "lamb", "prawn", "spinach", "walnut", "fennel", "chicken", "pork",
                "halloumi", "cauliflower", "squash", "barley")
_DISHES = ("stew", "curry", "soup", "pie", "risotto", "tacos", "salad", "dumplings", "noodles",
           "lasagne", "burrito", "casserole", "skewers", "pasta", "flatbread")
_STREET_TYPES = ("Street", "Lane", "Road", "Avenue", "Close", "Way", "Crescent", "Drive", "Row")
_COMPANY_TYPES = ("Labs", "Systems", "Logistics", "Foods", "Partners", "Analytics", "Studios",
                  "Industries", "Holdings", "Dynamics", "Clinic", "Works")
_TITLE_ADJS = ("Silent", "Hidden", "Last", "Broken", "Golden", "Forgotten", "Crimson", "Hollow",
               "Endless", "Frozen", "Wandering", "Secret", "Burning", "Distant", "Quiet", "Lonely",
               "Silver", "Midnight", "Painted", "Sunken")
_TITLE_NOUNS = ("Lighthouse", "Orchard", "River", "Garden", "Kingdom", "Letter", "Compass", "Harbour",
                "Mountain", "Clockmaker", "Bridge", "Island", "Forest", "Violin", "Engine", "Map",
                "Lantern", "Archive", "Tower", "Voyage")
_LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZ"


def _syllable(rng: random.Random) -> str:
    return rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS)


def _stem(rng: random.Random, ends: Iterable[str] = ("",)) -> str:
    """A capitalised pronounceable word of two syllables and an ending (always a consonant first)."""
    return (_syllable(rng) + _syllable(rng) + rng.choice(tuple(ends))).capitalize()


def _person(rng: random.Random) -> str:
    return _stem(rng, _NAME_ENDS)


def _pet(rng: random.Random) -> str:
    return (_syllable(rng) + rng.choice(_PET_ENDS)).capitalize()


def _city(rng: random.Random) -> str:
    if rng.random() < 0.25:
        return f"{rng.choice(_CITY_PREFIXES)} {_stem(rng)}"
    return _stem(rng) + rng.choice(_CITY_SUFFIXES)


def _job(rng: random.Random) -> str:
    return f"{rng.choice(_LEVELS)}{rng.choice(_FIELDS)} {rng.choice(_ROLES)}"


def _colour(rng: random.Random) -> str:
    if rng.random() < 0.3:
        a, b = rng.sample(_COLOURS, 2)
        return f"{a}-{b}"
    return f"{rng.choice(_SHADES)} {rng.choice(_COLOURS)}"


def _date(rng: random.Random) -> str:
    return f"{rng.randint(1, 28)} {rng.choice(_MONTHS)} {rng.randint(1950, 2024)}"


def _time(rng: random.Random) -> str:
    return f"{rng.randint(1, 12)}:{rng.randint(0, 59):02d} {rng.choice(('am', 'pm'))}"


def _brand(rng: random.Random) -> str:
    return f"{_stem(rng)} {rng.randint(10, 99) * 10}"


def _food(rng: random.Random) -> str:
    return f"{rng.choice(_TASTES)} {rng.choice(_INGREDIENTS)} {rng.choice(_DISHES)}"


def _code(rng: random.Random) -> str:
    return f"{rng.choice(_LETTERS)}{rng.choice(_LETTERS)}-{rng.randint(100, 9999)}"


def _title(rng: random.Random) -> str:
    base = f"The {rng.choice(_TITLE_ADJS)} {rng.choice(_TITLE_NOUNS)}"
    return f"{base} of {_stem(rng)}" if rng.random() < 0.5 else base


GENERATORS: dict[str, Callable[[random.Random], str]] = {
    "person": _person,
    "pet": _pet,
    "city": _city,
    "job": _job,
    "colour": _colour,
    "number": lambda rng: str(rng.randint(10, 9999)),
    "date": _date,
    "time": _time,
    "brand": _brand,
    "food": _food,
    "street": lambda rng: f"{_stem(rng)} {rng.choice(_STREET_TYPES)}",
    "company": lambda rng: f"{_stem(rng)} {rng.choice(_COMPANY_TYPES)}",
    "code": _code,
    "title": _title,
}


def value_split(value: str) -> str:
    """The split a value string belongs to: a fixed hash of its case-folded text."""
    return SPLITS[zlib.crc32(value.casefold().encode("utf-8")) & 1]


def sample_value(kind: str, split: str, rng: random.Random, avoid: Iterable[str] = ()) -> str:
    """Draw a value of ``kind`` from the pool of ``split``.

    Args:
        kind: A key of :data:`GENERATORS`.
        split: ``"train"`` or ``"test"``.
        rng: The random source (the draw is deterministic given its state).
        avoid: Values already used; the draw is neither a substring of one of them nor contains one
            (so "42" is never drawn beside "1:42 pm"), case-insensitively.

    Raises:
        ValueError: For an unknown kind or split.
        RuntimeError: If no admissible value is found in 1000 draws (a pool too small for ``avoid``).
    """
    if kind not in GENERATORS:
        raise ValueError(f"unknown value kind {kind!r}; known: {sorted(GENERATORS)}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    used = [a.casefold() for a in avoid]
    for _ in range(1000):
        v = GENERATORS[kind](rng)
        low = v.casefold()
        if value_split(v) == split and not any(low in u or u in low for u in used):
            return v
    raise RuntimeError(f"could not draw a {kind} value for {split} avoiding {len(used)} values")
