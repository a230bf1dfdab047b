"""What the synthetic facts talk about: attribute types, phrasings and filler turns, per split.

TRAIN and TEST share nothing that carries a fact: their attribute types are different, their
generic statement / question / update frames are different, and every attribute's own phrasings
mention its own noun phrase, so no rendered template occurs in both. Values are split separately
(:mod:`agentmem.data.values`). Filler turns and acknowledgements carry no fact and are shared.

Templates contain ``{v}`` (the value, exactly once, never at the start of a sentence) and generic
frames also ``{p}`` (the attribute's noun phrase, read after "my").
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Attribute:
    """One attribute type of the synthetic user.

    Attributes:
        key: Identifier stored in ``meta["attribute"]``.
        kind: The value kind (a key of ``values.GENERATORS``).
        phrase: Noun phrase read after "my" in the generic frames (e.g. ``"sister's name"``).
        statements: Attribute-specific statement templates with ``{v}``.
        questions: Attribute-specific questions.
    """

    key: str
    kind: str
    phrase: str
    statements: tuple[str, ...]
    questions: tuple[str, ...]


def _a(key: str, kind: str, phrase: str, statements: tuple[str, ...], *questions: str) -> Attribute:
    return Attribute(key, kind, phrase, statements, questions)


TRAIN_ATTRIBUTES = (
    _a("sister_name", "person", "sister's name",
       ("My sister is called {v}.", "I have a sister named {v}."), "What is my sister called?"),
    _a("best_friend_name", "person", "best friend's name",
       ("My best friend is {v}.", "I have been friends with {v} since school."), "Who is my best friend?"),
    _a("boss_name", "person", "boss's name",
       ("My boss is called {v}.", "At work I report to {v}."), "Who is my boss?"),
    _a("son_name", "person", "son's name",
       ("My son is called {v}.", "Our little boy is named {v}."), "What is my son called?"),
    _a("dog_name", "pet", "dog's name",
       ("My dog is called {v}.", "We named our dog {v}."), "What is my dog called?"),
    _a("cat_name", "pet", "cat's name",
       ("Our cat answers to {v}.", "I have a cat named {v}."), "What do we call our cat?"),
    _a("home_city", "city", "home city",
       ("I live in {v}.", "These days home for me is {v}."), "Which city do I live in?"),
    _a("holiday_city", "city", "holiday destination",
       ("This summer I am going on holiday to {v}.",), "Where am I going on holiday?"),
    _a("job_title", "job", "job title",
       ("At work my title is {v}.", "I have worked as {v} for years."), "What do I do for a living?"),
    _a("favourite_colour", "colour", "favourite colour",
       ("I love the colour {v} more than any other.",), "Which colour do I like best?"),
    _a("car_model", "brand", "car",
       ("I drive a {v}.", "Last year I bought a {v}."), "What car do I drive?"),
    _a("lucky_number", "number", "lucky number",
       ("I always pick {v} because it brings me luck.",), "Which number brings me luck?"),
    _a("locker_number", "number", "gym locker number",
       ("My gym locker is number {v}.",), "What number is my gym locker?"),
    _a("birthday", "date", "birthday",
       ("My birthday falls on {v}.", "I came into the world on {v}."), "When is my birthday?"),
    _a("alarm_time", "time", "alarm time",
       ("My alarm goes off at {v} every morning.", "I wake up at {v} on weekdays."),
       "What time does my alarm go off?"),
    _a("favourite_dish", "food", "favourite dish",
       ("I could eat {v} every single day.",), "Which dish could I eat every day?"),
    _a("street", "street", "street",
       ("Our house is on {v}.", "I live on {v}."), "Which street is our house on?"),
    _a("employer", "company", "employer",
       ("I work at {v}.", "I got a job at {v}."), "Which company do I work for?"),
    _a("flight_number", "code", "flight number",
       ("I am booked on flight {v}.",), "Which flight am I booked on?"),
    _a("favourite_book", "title", "favourite book",
       ("I keep rereading {v}.", "The book I love most is {v}."), "Which book do I keep rereading?"),
)

TEST_ATTRIBUTES = (
    _a("brother_name", "person", "brother's name",
       ("I have a brother called {v}.",), "What is my brother's name?"),
    _a("neighbour_name", "person", "neighbour's name",
       ("The neighbour next door is {v}.",), "Who lives next door to me?"),
    _a("parrot_name", "pet", "parrot's name",
       ("Our parrot is named {v}.",), "What did we name the parrot?"),
    _a("birthplace", "city", "birthplace",
       ("I was born in {v}.",), "Where was I born?"),
    _a("partner_job", "job", "partner's job title",
       ("My partner works as {v}.",), "What does my partner do for work?"),
    _a("kitchen_colour", "colour", "kitchen wall colour",
       ("We painted the kitchen walls {v}.",), "What colour are my kitchen walls?"),
    _a("anniversary", "date", "wedding anniversary",
       ("We got married on {v}.",), "When did we get married?"),
    _a("door_code", "number", "door code",
       ("The code for my front door is {v}.",), "What is the code for my front door?"),
    _a("favourite_film", "title", "favourite film",
       ("The film I love most is called {v}.",), "Which film do I love most?"),
    _a("licence_plate", "code", "licence plate",
       ("The licence plate on my car reads {v}.",), "What does my licence plate read?"),
    _a("train_time", "time", "train departure time",
       ("My train leaves at {v}.",), "When does my train leave?"),
    _a("dentist", "company", "dentist's practice",
       ("My dentist works at {v}.",), "Where does my dentist work?"),
)

ATTRIBUTES = {"train": TRAIN_ATTRIBUTES, "test": TEST_ATTRIBUTES}

STATEMENT_FRAMES = {
    "train": ("My {p} is {v}.", "Just so you know, my {p} is {v}.", "For the record, my {p} is {v}.",
              "A quick fact about me: my {p} is {v}."),
    "test": ("Please remember that my {p} is {v}.", "Keep this in mind: my {p} is {v}.",
             "Here is something about me, my {p} is {v}."),
}
QUESTION_FRAMES = {
    "train": ("What is my {p}?", "Do you remember my {p}?", "Tell me my {p}."),
    "test": ("Can you remind me what my {p} is?", "What did I tell you my {p} is?"),
}
UPDATE_FRAMES = {
    "train": ("Actually, my {p} has changed. It is now {v}.", "Update: my {p} is now {v}.",
              "Things are different now, my {p} is {v}."),
    "test": ("Correction: my {p} is {v} these days.", "Please forget what I said before, my {p} is now {v}."),
}

FACT_ACKS = ("Got it.", "Noted.", "Thanks for telling me.", "I will remember that.", "Okay, noted!",
             "Understood.")

# Filler turns: (user template, slot values). No digits and no capitalised names, so they never
# contain a fact value.
FILLERS = (
    ("I watched a documentary about {x} last night.",
     ("volcanoes", "deep sea fish", "ancient roads", "glaciers", "honey bees", "desert storms")),
    ("The weather has been {x} all week.", ("rainy", "grey", "sunny", "windy", "strange", "cold")),
    ("I am thinking about learning to {x}.",
     ("knit", "juggle", "sail", "bake bread", "play chess", "draw portraits")),
    ("Do you think {x} are overrated?", ("podcasts", "smart watches", "road trips", "brunches")),
    ("My morning was mostly spent {x}.",
     ("answering emails", "cleaning the garage", "fixing a leak", "reading the news")),
    ("I read an article saying {x} is good for your health.",
     ("walking", "drinking water", "sleeping early", "stretching", "laughing")),
    ("The traffic today was {x}.", ("terrible", "surprisingly light", "slow", "annoying")),
    ("I tried a new recipe with {x} yesterday.", ("oats", "rice", "beans", "apples", "cabbage")),
    ("Have you heard that {x} can live for decades?", ("tortoises", "crows", "some trees", "koi")),
    ("I need to remember to {x} this weekend.",
     ("water the plants", "call the plumber", "return a parcel", "wash the windows")),
)
FILLER_REPLIES = ("That sounds nice.", "Interesting!", "Tell me more sometime.", "Fair enough.",
                  "I see.", "That makes sense.")
