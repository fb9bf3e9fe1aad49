import random
from pathlib import Path

from lamp_harness import DataSource, SplitFiles, atomic_write_json, lamp_error, split_file_names
from lamp_suite.task import CITIES


class Cities(DataSource):
    name = "cities"
    schemes = ("user",)

    def locate(self, task, split, scheme="user", *, download=True):
        if split not in ("train", "dev"):
            raise lamp_error(f"no {split!r} split in 'cities'", fix="Use --split train or dev.")
        folder = Path(self.context.lamp_home) / "cities-v1"
        q_name, o_name = split_file_names(split)
        if not (folder / o_name).is_file():
            rng = random.Random(split)
            questions, golds = [], []
            for u in range(20 if split == "train" else 10):
                city = CITIES[u % 3]
                profile = [
                    {"id": f"{split}{u}-{i}", "text": f"lovely day in {city if i % 2 else rng.choice(CITIES)}"}
                    for i in range(6)
                ]
                qid = f"{split}-{u}"
                questions.append(
                    {"id": qid, "input": "Which city does this user live in: weekend plans", "profile": profile}
                )
                golds.append({"id": qid, "output": city})
            atomic_write_json(folder / q_name, questions)
            atomic_write_json(folder / o_name, {"task": task.official_name, "golds": golds})
        return SplitFiles(folder / q_name, folder / o_name, source="cities:v1")
