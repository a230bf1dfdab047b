"""Ordinary requests, and earlier conversations to hold in memory while they are asked.

What a memory must leave intact is the model's answer to everything that does not concern it.
:func:`prompts` renders requests of nine kinds (explanations, lists, advice, poems, small talk,
arithmetic, instructions, multi-sentence requests, personal news); the TRAIN and TEST splits share no template
and no topic, so a test request was never seen in training in any form.

:func:`small_talk` builds long chats without facts, the third kind of memory beside the synthetic
facts (:mod:`agentmem.data.synthetic`) and bAbI stories (:mod:`agentmem.data.babi`); its user
lines are split the same way.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from agentmem.data.values import SPLITS

Message = dict[str, str]


@dataclass(frozen=True)
class Request:
    """One ordinary request: its text, kind (e.g. ``"poem"``) and split."""

    text: str
    kind: str
    split: str


# Per kind: (templates, topics) for train, then for test. A template has {t} (a topic) or, for
# arithmetic, {a} and {b}; small talk has whole sentences and no topics.
_EXPLAIN = ((("Explain how {t} works.", "What is {t}? Answer in two sentences.",
              "Why is {t} important?", "Tell me something interesting about {t}."),
             ("photosynthesis", "volcanoes", "rainbows", "the internet", "vaccines", "tides",
              "electricity", "gravity", "bees", "the stock market", "clouds", "the human heart")),
            (("Can you describe {t} to a beginner?", "Give a short explanation of {t}.",
              "What should everyone know about {t}?", "Write one sentence about {t}."),
             ("the ocean", "earthquakes", "solar panels", "leap years", "recycling",
              "the phases of the moon", "bread baking", "black holes", "democracy", "coffee",
              "the immune system", "airplanes")))
_LIST = ((("List three {t}.", "Name a few {t}.", "What are some {t}?"),
          ("fruits rich in vitamin C", "things to pack for a beach trip", "famous painters",
           "board games for families", "countries in South America", "healthy breakfast ideas",
           "musical instruments", "ways to reuse glass jars")),
         (("Give me a list of {t}.", "Can you suggest five {t}?", "Which {t} would you recommend?"),
          ("houseplants that need little light", "classic novels", "indoor hobbies for winter",
           "vegetables that grow fast", "birds found in cities", "hiking essentials",
           "podcast topics", "quick dinner recipes")))
_ADVICE = ((("How can I {t}?", "Give me some tips to {t}.", "What is the best way to {t}?"),
            ("sleep better", "save money", "get better at chess", "keep my houseplants alive",
             "cook rice properly", "prepare for a job interview", "run my first 5k",
             "organise my desk")),
           (("Any advice on how to {t}?", "I want to {t}. Where do I start?",
             "What habits help people {t}?"),
            ("learn a new language", "stay focused while studying", "make new friends",
             "drink more water", "write a good email", "reduce stress", "start journaling",
             "travel on a budget")))
_POEM = ((("Write a short poem about {t}.", "Write a haiku about {t}."),
          ("autumn leaves", "the sea at night", "a sleepy cat", "the first snow", "city lights",
           "a morning coffee")),
         (("Compose a four-line rhyme about {t}.", "Write a limerick about {t}."),
          ("a lost umbrella", "spring rain", "an old lighthouse", "a busy bakery", "the desert",
           "a paper boat")))
_SMALL_TALK = (("How are you today?", "What a lovely morning!", "I'm bored, talk to me.",
                "Good evening! Anything fun on your mind?", "Thanks for your help earlier.",
                "Do you like music?", "It's raining again here.", "I just finished my lunch."),
               ("Hey, how's it going?", "I just got back from a walk.", "What do you enjoy doing?",
                "Happy Friday!", "Tell me a fun fact.", "I had a long day at work.",
                "Good morning, friend.", "What's your favourite season?"))
_ARITHMETIC = (("What is {a} plus {b}?", "Calculate {a} times {b}.",
                "What do you get if you add {a} and {b}?"),
               ("How much is {a} minus {b}?", "If I have {a} apples and buy {b} more, how many do I "
                "have?", "What is {a} multiplied by {b}? Show your working."))
_INSTRUCT = ((("Rewrite this sentence in the past tense: {t}", "Translate into French: {t}",
               "Correct the grammar of this sentence: {t}"),
              ("I walk to the market every day.", "She eat an apple in the garden.",
               "We are building a small wooden boat.", "The children plays football after school.",
               "He writes a letter to his grandmother.", "They is happy with the results.")),
             (("Make this sentence more formal: {t}", "Summarise in five words: {t}",
               "Turn this into a question: {t}"),
              ("The meeting got moved to next week because the boss is sick.",
               "My neighbour's dog barks all night and nobody does anything.",
               "The new library opens on Monday with free coffee for everyone.",
               "We missed the train, so we took a taxi to the airport.",
               "The recipe needs two eggs, some flour and a cup of milk.",
               "Our team won the match after a very long second half.")))
_MULTI = ((("I'm planning {t}. What should I prepare? Please be specific.",
            "My family wants to try {t} this weekend. We have never done it. What do we need to "
            "know?"),
           ("a camping trip", "a birthday party for my daughter", "a picnic in the park",
            "a road trip along the coast", "a dinner for six friends", "a day at the museum")),
          (("My friend asked me about {t}. I don't know much about it. Can you help me explain it?",
            "Next month I'm starting {t}. I'm a bit nervous. How should I get ready?"),
           ("a pottery class", "a volunteering job", "a long train journey", "a cooking course",
            "a new gym routine", "a language exchange")))

_NEWS = ((("Guess what: I just {t}!", "Quick update from me: I {t}."),
          ("adopted a puppy", "passed my driving test", "moved to a new flat", "started a pottery class",
           "ran a half marathon", "got a promotion at work")),
         (("Big news: I {t}.", "You won't believe it, but I {t} today."),
          ("started a new job as a glassblower in Lyon", "bought a sailing boat",
           "finished writing my first novel", "won a baking contest", "booked a trip to Iceland",
           "planted an apple tree")))

_TOPICAL = {"explanation": _EXPLAIN, "list": _LIST, "advice": _ADVICE, "poem": _POEM,
            "instruction": _INSTRUCT, "multi-sentence": _MULTI, "news": _NEWS}
KINDS = ("explanation", "list", "advice", "poem", "small talk", "arithmetic", "instruction",
         "multi-sentence", "news")


def _check_split(split: str) -> int:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return SPLITS.index(split)


def all_requests(split: str) -> list[str]:
    """Every request text of a split that does not draw numbers (all kinds but arithmetic)."""
    s = _check_split(split)
    out = [tpl.format(t=t) for kind in _TOPICAL.values()
           for tpl in kind[s][0] for t in kind[s][1]]
    return out + list(_SMALL_TALK[s])


def prompts(split: str, n: int, seed: int = 0) -> list[Request]:
    """``n`` requests of ``split``, kinds in turn (so every kind is equally represented), each
    drawn from ``(split, seed, i)`` alone: ``prompts(s, 10, k)`` is a prefix of
    ``prompts(s, 100, k)``.

    Raises:
        ValueError: For an unknown split or a negative ``n``.
    """
    s = _check_split(split)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    out = []
    for i in range(n):
        rng, kind = random.Random(f"ordinary:{split}:{seed}:{i}"), KINDS[i % len(KINDS)]
        if kind == "small talk":
            text = rng.choice(_SMALL_TALK[s])
        elif kind == "arithmetic":
            text = rng.choice(_ARITHMETIC[s]).format(a=rng.randint(2, 99), b=rng.randint(2, 49))
        else:
            templates, topics = _TOPICAL[kind][s]
            text = rng.choice(templates).format(t=rng.choice(topics))
        out.append(Request(text, kind, split))
    return out


_CHAT_REPLIES = ("That sounds nice!", "I'm glad to hear it.", "Tell me more.", "Oh, interesting.",
                 "Ha, I know the feeling.", "That's lovely.")
_CHAT_LINES = (("The weather has been so strange this week.", "I watched a great film last night.",
                "My neighbour plays the piano every evening.", "I'm thinking about painting the "
                "kitchen.", "The bus was late again this morning.", "I tried a new tea today.",
                "We had friends over for dinner.", "I can't decide what to read next.",
                "The park was full of people today.", "I finally fixed my bike."),
               ("I went to a concert on Saturday.", "My coffee machine broke this morning.",
                "The garden is full of flowers now.", "I'm learning to knit, slowly.",
                "Traffic was terrible on the way home.", "We are redecorating the living room.",
                "I found an old photo album yesterday.", "The market had fresh strawberries.",
                "I slept in until ten today.", "My phone battery dies so fast lately."))


def small_talk(split: str, n: int, seed: int = 0, turns: tuple[int, int] = (4, 10)
               ) -> list[list[Message]]:
    """``n`` chats of ``split`` of small talk without facts: each a random number of turns in
    ``turns`` (inclusive), a user line and a short reply per turn.

    Raises:
        ValueError: For an unknown split, a negative ``n`` or a bad ``turns`` range.
    """
    s = _check_split(split)
    if n < 0 or not 1 <= turns[0] <= turns[1]:
        raise ValueError(f"need n >= 0 and 1 <= turns[0] <= turns[1], got n={n}, turns={turns}")
    chats = []
    for i in range(n):
        rng = random.Random(f"small-talk:{split}:{seed}:{i}")
        chat: list[Message] = []
        for line in rng.sample(_CHAT_LINES[s], min(rng.randint(*turns), len(_CHAT_LINES[s]))):
            chat += [{"role": "user", "content": line},
                     {"role": "assistant", "content": rng.choice(_CHAT_REPLIES)}]
        chats.append(chat)
    return chats
