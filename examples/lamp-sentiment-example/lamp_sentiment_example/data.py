"""The ``toy-sentiment`` data source: a small deterministic dataset generated on first use."""

from __future__ import annotations

import json
import random
from pathlib import Path

from lamp_harness import DataSource, SplitFiles, Task, atomic_write_json, lamp_error, split_file_names

VERSION = 1
USERS = {"train": 30, "dev": 30}
QUESTIONS = {"train": 2, "dev": 1}
POSITIVE = ("great", "lovely", "excellent", "wonderful")
NEGATIVE = ("awful", "broken", "terrible", "useless")
THINGS = ("kettle", "lamp", "backpack", "blender", "chair", "headset")
INSTRUCTION = "Is this review positive or negative? Answer with one word. review: "


def _review(rng: random.Random, tone: str) -> str:
    thing = rng.choice(THINGS)
    if tone == "positive":
        return f"the {thing} is {rng.choice(POSITIVE)}"
    if tone == "negative":
        return f"the {thing} is {rng.choice(NEGATIVE)}"
    return f"the {thing} is okay I guess"


def generate(split: str) -> tuple[list[dict], dict]:
    """Questions and outputs of one split: clear reviews follow their cue word; lukewarm ones
    follow the user's habit (an optimist or a pessimist), visible in the profile's labels."""
    rng = random.Random(f"toy-sentiment/v{VERSION}/{split}")
    questions, golds = [], []
    for user in range(USERS[split]):
        habit = "positive" if user % 2 else "negative"
        profile = []
        for i in range(10):
            tone = rng.choice(("positive", "negative", "lukewarm", "lukewarm"))
            label = habit if tone == "lukewarm" else tone
            profile.append({"id": f"{split}-{user}-p{i}", "text": _review(rng, tone), "label": label})
        for q in range(QUESTIONS[split]):
            tone = "lukewarm" if q == 0 else rng.choice(("positive", "negative"))
            qid = f"{split}-{user}-q{q}"
            questions.append({"id": qid, "input": INSTRUCTION + _review(rng, tone), "profile": profile})
            golds.append({"id": qid, "output": habit if tone == "lukewarm" else tone})
    return questions, {"task": "Toy_Sentiment", "golds": golds}


class ToySentimentSource(DataSource):
    """Writes the train and dev splits to ``$LAMP_HOME/toy-sentiment/v1/`` on first use."""

    name = "toy-sentiment"
    schemes = ("user",)

    def locate(self, task: Task, split: str, scheme: str = "user", *, download: bool = True) -> SplitFiles:
        if task.name != "toy-sentiment":
            raise lamp_error(
                f"the toy-sentiment source has no data for task {task.name!r}",
                fix="Use it for toy-sentiment only, e.g. --data toy-sentiment=toy-sentiment.",
            )
        if split not in USERS:
            raise lamp_error(f"the toy-sentiment source has no {split!r} split", fix="Use --split train or dev.")
        folder = Path(self.context.lamp_home) / "toy-sentiment" / f"v{VERSION}"
        questions_name, outputs_name = split_file_names(split)
        questions_path, outputs_path = folder / questions_name, folder / outputs_name
        if not outputs_path.is_file():
            questions, outputs = generate(split)
            atomic_write_json(questions_path, questions)
            atomic_write_json(outputs_path, outputs)  # written last: its presence means "complete"
        return SplitFiles(questions_path, outputs_path, source=f"toy-sentiment:v{VERSION}")

    def cached(self, task: Task) -> list[tuple[str, str, SplitFiles]]:
        folder = Path(self.context.lamp_home) / "toy-sentiment" / f"v{VERSION}"
        found = []
        for split in USERS:
            q, o = (folder / name for name in split_file_names(split))
            if o.is_file():
                found.append(("user", split, SplitFiles(q, o, f"toy-sentiment:v{VERSION}")))
        return found


def read_split(path: Path) -> list[dict]:
    """The questions of a generated split (for tests)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))
