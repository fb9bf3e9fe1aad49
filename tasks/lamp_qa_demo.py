"""Synthetic LaMP-QA data (``--data demo``) with planted per-user preferences.

Every synthetic user has one standing preference (a tight budget, being a beginner, little time,
children at home, living far from a city, wanting online resources). Their profile (8 to 12 past
questions with details) shows it in about half of the items, in varied words; their question
does not mention it. The evaluation-only fields say it: the narrative states it and one of the
question's rubric aspects asks for it (the others are about the question's topic). So an answer
that read the profile can cover an aspect that an answer from the question alone has no reason
to cover. Deterministic (seeded by version, task and split); ``train`` has 20 users x 2
questions, ``dev`` 20 other users x 1 question.
"""

from __future__ import annotations

import random
from typing import Any

VERSION = 1
USERS = {"train": 20, "dev": 20}
QUESTIONS = {"train": 2, "dev": 1}

PREFERENCES = {
    "budget": {
        "cues": [
            "I can't spend much money on this.",
            "Money is tight for me right now.",
            "I'm looking for the cheapest way to do it.",
            "I only have a small budget.",
        ],
        "aspect": "Affordable options",
        "reason": "The user has very little money to spend.",
        "narrative": "I am on a very tight budget, so anything expensive is out of the question.",
    },
    "beginner": {
        "cues": [
            "I'm a complete beginner.",
            "I have never done this before.",
            "I don't know the basics yet.",
            "I am just starting out.",
        ],
        "aspect": "Beginner-friendly first steps",
        "reason": "The user has no experience at all.",
        "narrative": "I am a complete beginner and have never tried anything like this.",
    },
    "time": {
        "cues": [
            "I only have a few minutes a day.",
            "My schedule is really busy.",
            "I work long hours and have little free time.",
            "I can only spare weekends.",
        ],
        "aspect": "Little time needed",
        "reason": "The user has almost no free time.",
        "narrative": "I work long hours, so I only have a few minutes a day for this.",
    },
    "kids": {
        "cues": [
            "I have two young kids at home.",
            "It has to work with my children around.",
            "My kids are always with me.",
            "I'm a parent of toddlers.",
        ],
        "aspect": "Suitable with young children",
        "reason": "The user has young children at home.",
        "narrative": "I have two young kids at home, so it has to work with them around.",
    },
    "rural": {
        "cues": [
            "I live far from any city.",
            "There is nothing like that in my small town.",
            "The nearest shop is an hour away.",
            "I live in the countryside.",
        ],
        "aspect": "Options far from a city",
        "reason": "The user lives far from cities and shops.",
        "narrative": "I live in a small village far from any city, so nothing is available nearby.",
    },
    "online": {
        "cues": [
            "I prefer learning online.",
            "I'd like a website or an app for it.",
            "Online courses work best for me.",
            "I learn best from videos on the internet.",
        ],
        "aspect": "Online resources",
        "reason": "The user learns best from online material.",
        "narrative": "I learn best online, from websites, apps and videos.",
    },
}

TOPICS = {
    "lamp-qa-arts": [
        ("How can I get better at drawing portraits?", "Practice methods for portraits"),
        ("What is a good way to start playing the guitar?", "Concrete guitar practice plan"),
        ("How do I start writing short stories?", "Steps to write a first story"),
        ("How can I learn to take better photos?", "Photography techniques"),
        ("What should I know before starting to paint with watercolors?", "Watercolor materials and techniques"),
    ],
    "lamp-qa-lifestyle": [
        ("How can I build a habit of exercising?", "A sustainable exercise routine"),
        ("What is a good way to start cooking healthy meals?", "Healthy recipes and planning"),
        ("How can I become more organized at home?", "Organization methods"),
        ("How do I start learning a new language?", "Language learning methods"),
        ("How can I sleep better at night?", "Sleep hygiene advice"),
    ],
    "lamp-qa-society": [
        ("How can I get involved in my local community?", "Ways to volunteer or take part"),
        ("How do I learn more about the history of my country?", "Sources on national history"),
        ("How can I talk about politics with family without fighting?", "Calm conversation strategies"),
        ("What is a good way to learn about other cultures?", "Ways to learn about cultures"),
        ("How can I help people in need around me?", "Concrete ways to help others"),
    ],
}

NEUTRAL = [
    "What is a good book to read this summer? I finished my last one and want something new.",
    "How do I keep my plants alive? They keep drying out.",
    "Which board games are fun for a group? We meet every Friday.",
    "How do I fix a squeaky door? It is driving me crazy.",
    "What should I cook for a dinner party? I invited six friends.",
    "How do I clean a cast iron pan? Mine is getting rusty.",
]
PAST = [
    "How can I start running?",
    "What hobby should I pick up?",
    "How do I learn to bake bread?",
    "How can I decorate my room?",
    "What is a good way to learn chess?",
    "How do I start a garden?",
    "How can I learn to sew?",
    "What is the best way to learn to swim?",
]


def generate(task: Any, split: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``(questions, outputs)`` of ``task``'s demo ``split`` in the harness's file format."""
    from lamp_tasks.lamp_qa import gold_record

    from lamp_harness import lamp_error

    if split not in USERS:
        raise lamp_error(
            f"the LaMP-QA demo has no {split!r} split", fix="Use --split dev or --split train with --data demo."
        )
    rng = random.Random(f"lamp-qa-demo-v{VERSION}/{task.name}/{split}")
    topics = TOPICS[task.name]
    kinds = sorted(PREFERENCES)
    first = 0 if split == "train" else USERS["train"]
    questions, golds = [], []
    for offset in range(USERS[split]):
        user = first + offset
        kind = kinds[user % len(kinds)]
        pref = PREFERENCES[kind]
        profile = []
        for position in range(rng.randint(8, 12)):
            if position % 2 == 0:
                text = f"{rng.choice(PAST)} {rng.choice(pref['cues'])}"
            else:
                text = rng.choice(NEUTRAL)
            profile.append({"id": f"{task.name}-{split}-{user:03d}-{position:02d}", "text": text})
        rng.shuffle(profile)
        for question, topic_aspect in rng.sample(topics, QUESTIONS[split]):
            qid = f"{task.name}-{split}-{len(questions):04d}"
            aspects = [
                {"aspect": pref["aspect"], "reason": pref["reason"], "evidence": pref["narrative"]},
                {"aspect": topic_aspect, "reason": "The user wants practical, specific advice.", "evidence": question},
            ]
            rng.shuffle(aspects)
            questions.append({"id": qid, "input": question, "profile": [dict(p) for p in profile]})
            golds.append({"id": qid, "output": gold_record(pref["narrative"], aspects)})
    return questions, {"task": task.official_name, "golds": golds}
