"""Synthetic demo data for the LongLaMP and PersonaMem tasks, with planted per-user signals.

Used by the ``demo`` data source (:mod:`lamp_tasks.demo`) exactly like the LaMP demo: same sizes
(train 40 users x 2 questions, dev 40 other users x 1; PersonaMem: 20 / 10 users x 4 questions),
same determinism (seeded :mod:`random`), same official-format files.

Planted signals:

- **LongLaMP** (all three tasks): every user has a signature opening sentence and a signature
  closing sentence, and favours three words of their own; every text they wrote (profile items and
  the gold) opens and closes with them and uses the words. The input names only the topic, so a
  model without the profile cannot know them; a retrieved item shows all three.
- **PersonaMem**: every user's shared conversation states a preference in an early session
  (``I love jazz``) and changes it in a later one (``lately I only listen to classical``), among
  small-talk sessions. Questions are asked at points before and after the change; the options
  always hold both preferences (and two others of the same kind), and the gold is the one in force
  **at the question's point in the timeline**, so a model that sees the context up to that point
  (and no further) can answer, and one that saw the future would be misled.
"""

from __future__ import annotations

import random
from typing import Any

Record = dict[str, Any]
VERSION = 1
USERS = {"train": 40, "dev": 40}
QUESTIONS = {"train": 2, "dev": 1}
PM_USERS = {"train": 20, "dev": 10}
PM_QUESTIONS = 4

OPENERS = [
    "Honestly, I did not expect much at first.",
    "Let me start with the bottom line.",
    "Quick context before anything else.",
    "I will keep this one practical.",
    "Here is my take after some weeks.",
    "First impressions matter to me.",
    "Straight to the point, as always.",
    "Long story short, read on.",
]
CLOSERS = [
    "That is my two cents, take it or leave it.",
    "Would do it all over again, no regrets.",
    "Hope this helps someone out there.",
    "Final verdict stands, end of story.",
    "Thanks for reading this far, friends.",
    "Make of that what you will.",
    "So there you have it, folks.",
    "Until next time, stay curious.",
]
STYLE_WORDS = [
    "remarkably",
    "sturdy",
    "delightful",
    "clunky",
    "elegant",
    "gritty",
    "snappy",
    "mellow",
    "rugged",
    "quirky",
    "crisp",
    "hefty",
    "nimble",
    "plush",
    "breezy",
    "earnest",
]
TOPICS = {
    "longlamp-review": [
        "coffee grinder",
        "hiking boots",
        "desk lamp",
        "blender",
        "backpack",
        "keyboard",
        "water bottle",
        "headphones",
        "tent",
        "kettle",
        "office chair",
        "rain jacket",
    ],
    "longlamp-abstract": [
        "graph neural networks",
        "protein folding",
        "sparse attention",
        "federated learning",
        "causal inference",
        "speech synthesis",
        "robot grasping",
        "query optimization",
        "image segmentation",
        "climate modeling",
        "program synthesis",
        "active learning",
    ],
    "longlamp-topic": [
        "learning to bake bread",
        "my first marathon",
        "moving to a new city",
        "fixing an old bike",
        "starting a garden",
        "learning the guitar",
        "a week without a phone",
        "adopting a cat",
        "building a desk",
        "camping in the rain",
        "cooking for friends",
        "a solo road trip",
    ],
}
FILLER = [
    "It does what it says and the details are worth a mention.",
    "The first days were about getting used to it.",
    "There were a few surprises along the way.",
    "Some parts stood out more than others.",
    "I compared it with what I knew before.",
]


def _text(rng: random.Random, opener: str, closer: str, words: list[str], topic: str) -> str:
    body = [
        f"This is about {topic}.",
        f"The {topic} felt {words[0]} and {words[1]}.",
        rng.choice(FILLER),
        f"Overall the experience was {words[2]}.",
    ]
    return " ".join([opener, *body, closer])


def generate_longlamp(task: str, split: str) -> tuple[list[Record], Record]:
    """The demo questions and outputs of a LongLaMP task's split (official-format records)."""
    rng = random.Random(f"lamp-demo-v{VERSION}/{task}/{split}")
    first = 0 if split == "train" else USERS["train"]
    topics = TOPICS[task]
    questions, golds = [], []
    digit = {"train": 0, "dev": 1}[split]
    for offset in range(USERS[split]):
        user = first + offset
        opener, closer = OPENERS[user % len(OPENERS)], CLOSERS[(user // len(OPENERS)) % len(CLOSERS)]
        words = rng.sample(STYLE_WORDS, 3)
        n_items = rng.randint(6, 12)
        chosen = rng.sample(topics, min(len(topics), n_items + QUESTIONS[split]))
        while len(chosen) < n_items + QUESTIONS[split]:
            chosen.append(rng.choice(topics))
        profile = []
        for position, topic in enumerate(chosen[:n_items]):
            text = _text(rng, opener, closer, words, topic)
            item: Record = {"id": f"{digit}{user:03d}{position:03d}"}
            item.update(_fields(task, rng, topic, text))
            profile.append(item)
        for topic in chosen[n_items:]:
            qid = f"{digit}{len(questions)}"
            gold = _text(rng, opener, closer, words, topic)
            questions.append({"id": qid, "input": _input(task, rng, topic), "profile": [dict(p) for p in profile]})
            golds.append({"id": qid, "output": gold})
    official = {
        "longlamp-review": "LongLaMP_product_review",
        "longlamp-abstract": "LongLaMP_abstract_generation",
        "longlamp-topic": "LongLaMP_topic_writing",
    }[task]
    return questions, {"task": official, "golds": golds}


def _fields(task: str, rng: random.Random, topic: str, text: str) -> Record:
    if task == "longlamp-review":
        return {
            "overall": f"{rng.randint(1, 5)}.0",
            "summary": f"About the {topic}",
            "description": f"A {topic}.",
            "reviewText": text,
        }
    if task == "longlamp-abstract":
        return {"title": f"A study of {topic}", "abstract": text}
    return {"summary": f"Post about {topic}", "content": text}


def _input(task: str, rng: random.Random, topic: str) -> str:
    if task == "longlamp-review":
        return (
            f"Generate the review text written by a reviewer who has a given an overall rating of "
            f'"{rng.randint(1, 5)}.0" for a product with description "A {topic}.". The summary of the '
            f'review text is "About the {topic}".'
        )
    if task == "longlamp-abstract":
        return f'Generate an abstract for the title "A study of {topic}" using the following items: {topic}'
    return f'Generate the content for a reddit post "Post about {topic}".'


# ---------------------------------------------------------------------------------------------
# PersonaMem
# ---------------------------------------------------------------------------------------------

PREFERENCES = {
    "music": ["jazz", "classical music", "heavy metal", "folk songs", "hip hop", "electronic music"],
    "food": ["spicy ramen", "vegan salads", "grilled steak", "sushi", "homemade pasta", "street tacos"],
    "sport": ["trail running", "swimming", "rock climbing", "yoga", "cycling", "tennis"],
}
ASKS = {
    "music": "Can you suggest something for me to listen to tonight?",
    "food": "What should I cook for dinner this weekend?",
    "sport": "What activity should I plan for Saturday morning?",
}
SMALL_TALK = [
    ("What is a good way to organise my week?", "Try blocking time for the important tasks first."),
    ("Any tips for sleeping better?", "Keep a regular schedule and avoid screens late."),
    ("How do I keep houseplants alive?", "Water them when the soil is dry and give them light."),
    ("Can you explain what a budget is for?", "It shows where money goes so you can plan."),
    ("What is a quick breakfast idea?", "Oats with fruit take five minutes."),
]


def generate_personamem(task: str, split: str) -> tuple[list[Record], Record]:
    """The demo questions and outputs of a PersonaMem task's split: each question's profile holds
    the sessions of its user's shared context before the question's point in the timeline."""
    from lamp_tasks.personamem import render_input, sessions

    rng = random.Random(f"lamp-demo-v{VERSION}/{task}/{split}")
    first = 0 if split == "train" else PM_USERS["train"]
    questions, golds = [], []
    for offset in range(PM_USERS[split]):
        user = first + offset
        kind = rng.choice(sorted(PREFERENCES))
        old, new = rng.sample(PREFERENCES[kind], 2)
        messages: list[Record] = [{"role": "system", "content": f"Current user persona: user {user}."}]
        talk = rng.sample(SMALL_TALK, len(SMALL_TALK))

        _session(messages, [talk[0]])
        _session(
            messages, [(f"I have to say, I really love {old}; it is my favourite {kind} by far.", f"Noted, {old} it is.")]
        )
        _session(messages, [talk[1], talk[2]])
        before = len(messages)  # questions asked here see only the old preference
        _session(messages, [talk[3]])
        _session(
            messages, [(f"Things changed: I am tired of {old}, lately I only want {new}.", f"Got it, {new} from now on.")]
        )
        _session(messages, [talk[4]])
        after = len(messages)
        points = [(before, old), (before, old), (after, new), (after, new)][:PM_QUESTIONS]
        types = [
            "recall_user_shared_facts",
            "provide_preference_aligned_recommendations",
            "acknowledge_latest_user_preferences",
            "track_full_preference_evolution",
        ]
        for (end, answer), qtype in zip(points, types, strict=True):
            others = [p for p in PREFERENCES[kind] if p not in (old, new)]
            options_text = [old, new, *rng.sample(others, 2)]  # both preferences are always options
            rng.shuffle(options_text)
            letter = "abcd"[options_text.index(answer)]
            options = [f"({'abcd'[i]}) How about some {text}?" for i, text in enumerate(options_text)]
            qid = f"{qtype}:{split}-{user}-{len(questions)}"
            questions.append({"id": qid, "input": render_input(ASKS[kind], options), "profile": sessions(messages, end)})
            golds.append({"id": qid, "output": f"({letter})"})
    official = {"personamem-32k": "PersonaMem_32k", "personamem-128k": "PersonaMem_128k"}[task]
    return questions, {"task": official, "golds": golds}


def _session(messages: list[Record], turns: list[tuple[str, str]]) -> None:
    """Append one chat session (a system marker, then the user/assistant turns) to ``messages``."""
    messages.append({"role": "system", "content": "A new session begins."})
    for question, answer in turns:
        messages.append({"role": "user", "content": question})
        messages.append({"role": "assistant", "content": answer})


GENERATORS = {name: generate_longlamp for name in TOPICS} | {
    "personamem-32k": generate_personamem,
    "personamem-128k": generate_personamem,
}
