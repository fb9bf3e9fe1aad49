"""Fidelity check: the official LaMP prompt code, run under its own pinned environment, against the
harness, prompt for prompt and top-k list for top-k list.

Needs (none of it is part of the project):

- a checkout of the official code (LaMP-Benchmark/LaMP): ``--lamp-repo PATH`` (the folder holding
  ``LaMP/prompts/prompts.py``);
- a Python environment with its pins: ``--official-python PATH``, e.g. made with
  ``python -m venv /tmp/lamp-official && /tmp/lamp-official/bin/pip install numpy==1.24.2
  transformers==4.27.1 rank_bm25==0.2.2`` (torch is not needed: a stub stands in for the
  Contriever import);
- tokenizer folders (``--tokenizer NAME=FOLDER``, repeatable) that tokenizers 0.13 can read: a
  ``tokenizer.json`` whose BPE merges are lists is rewritten into a temporary copy with
  ``"a b"`` strings.

Records: the real LaMP-7 dev questions (``--lamp7 FOLDER``, optional) and deterministic synthetic
records of all seven tasks with duplicated items (tied BM25 scores) and profiles of 1-130 items.
Prints the share of identical prompts and top-k lists per (tokenizer, task, k, L), and the total.

Usage::

    python benchmarks/official_prompts.py --lamp-repo ~/src/LaMP --official-python /tmp/lamp-official/bin/python \\
        --tokenizer smollm2=$LAMP_HOME/models/smollm2-135m-instruct --lamp7 ../shared/lamp-data/LaMP-7/user
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

TASKS = ("LaMP-1", "LaMP-2", "LaMP-3", "LaMP-4", "LaMP-5", "LaMP-6", "LaMP-7")
NAMES = {"LaMP-1": "lamp-1", "LaMP-2": "lamp-2", "LaMP-3": "lamp-3", "LaMP-4": "lamp-4",
         "LaMP-5": "lamp-5", "LaMP-6": "lamp-6", "LaMP-7": "lamp-7"}
WORDS = ("the a of to in and is was for on with that by this be are from at as it an or deep learning "
         "model data graph network user tweet movie review paper title news level ? ! . , don't it's "
         "we're I'm they've DeBarge  .. ' s n't").split(" ")

OFFICIAL_SIDE = r'''
import json, sys
sys.path.insert(0, sys.argv[1])
sys.path.append(sys.argv[4])  # a stub torch, found only when no real one is installed (Contriever only)
from prompts import prompts as P
from rank_bm25 import BM25Okapi
from transformers import AutoTokenizer
MAKERS = {"LaMP-1": P.classification_citation_query_corpus_maker, "LaMP-2": P.classification_movies_query_corpus_maker,
          "LaMP-3": P.classification_review_query_corpus_maker, "LaMP-4": P.generation_news_query_corpus_maker,
          "LaMP-5": P.generation_paper_query_corpus_maker, "LaMP-6": P.generation_avocado_query_corpus_maker,
          "LaMP-7": P.parphrase_tweet_query_corpus_maker}
jobs = json.load(open(sys.argv[2]))
out = {}
for job in jobs:
    tok = AutoTokenizer.from_pretrained(job["tokenizer"])
    records = json.load(open(job["records"]))[job["task"]]
    for k in job["ks"]:
        for L in job["budgets"]:
            prompt, _ = P.create_prompt_generator(k, "bm25", max_length=L, tokenizer=tok)
            for r in records:
                corpus, query = MAKERS[job["task"]](r["input"], r["profile"])
                top = BM25Okapi([x.split() for x in corpus]).get_top_n(query.split(), list(range(len(corpus))), n=k)
                key = "|".join((job["name"], job["task"], r["id"], str(k), str(L)))
                out[key] = [prompt(r["input"], r["profile"], job["task"]), top]
json.dump(out, open(sys.argv[3], "w"))
'''


def synthetic(seed: int = 0, per_task: int = 60) -> dict[str, list[dict]]:
    """Deterministic records of every task: random texts over a small vocabulary (punctuation that
    the decode clean-up touches included), duplicated items, profiles of 1-130 items."""
    rng = random.Random(seed)

    def text(n: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(n))

    items = {
        "LaMP-1": lambda: {"title": text(rng.randint(1, 12)), "abstract": text(rng.randint(0, 60))},
        "LaMP-2": lambda: {"description": text(rng.randint(1, 60)), "tag": rng.choice(["comedy", "sci-fi"])},
        "LaMP-3": lambda: {"text": text(rng.randint(1, 60)), "score": str(rng.randint(1, 5))},
        "LaMP-4": lambda: {"title": text(rng.randint(1, 10)), "text": text(rng.randint(1, 60))},
        "LaMP-5": lambda: {"title": text(rng.randint(1, 10)), "abstract": text(rng.randint(1, 60))},
        "LaMP-6": lambda: {"title": text(rng.randint(1, 10)), "text": text(rng.randint(1, 60))},
        "LaMP-7": lambda: {"text": text(rng.randint(1, 40))},
    }
    inputs = {
        "LaMP-1": lambda: (f'For an author who has written the paper with the title "{text(6)}", which reference '
                           f'is related? Just answer with [1] or [2] without explanation. [1]: "{text(6)}" '
                           f'[2]: "{text(6)}"'),
        "LaMP-2": lambda: f"Which tag does this movie relate to? description: {text(rng.randint(3, 80))}",
        "LaMP-3": lambda: f"What is the score of the following review? review: {text(rng.randint(3, 80))}",
        "LaMP-4": lambda: f"Generate a headline for the following article: {text(rng.randint(3, 80))}",
        "LaMP-5": lambda: f"Generate a title for the following abstract of a paper: {text(rng.randint(3, 80))}",
        "LaMP-6": lambda: f"Generate a subject for the following email: {text(rng.randint(3, 80))}",
        "LaMP-7": lambda: f"Paraphrase the following tweet without any explanation before or after it: "
                          f"{text(rng.randint(3, 40))}",
    }
    out: dict[str, list[dict]] = {}
    for task in TASKS:
        records = []
        for q in range(per_task):
            profile: list[dict] = []
            for _ in range(rng.choice([1, 2, 3, 5, 9, 16, 17, 18, 25, 40, 70, 130])):
                profile.append(dict(rng.choice(profile)) if profile and rng.random() < 0.3 else items[task]())
            for i, p in enumerate(profile):
                p["id"] = f"{q}-{i}"
            records.append({"id": f"{task}-{q}", "input": inputs[task](), "profile": profile})
        out[task] = records
    return out


def readable_copy(folder: Path, into: Path) -> Path:
    """``folder``'s tokenizer files, with list-style BPE merges rewritten for tokenizers 0.13."""
    into.mkdir(parents=True, exist_ok=True)
    for path in folder.iterdir():
        if path.is_file() and (path.name.startswith(("tokenizer", "special_tokens")) or path.suffix in (".txt", ".model")):
            data = path.read_bytes()
            if path.name == "tokenizer.json":
                spec = json.loads(data)
                merges = spec.get("model", {}).get("merges")
                if merges and isinstance(merges[0], list):
                    spec["model"]["merges"] = [" ".join(m) for m in merges]
                data = json.dumps(spec, ensure_ascii=False).encode()
            if path.name == "tokenizer_config.json":
                config = json.loads(data)
                config["tokenizer_class"] = "PreTrainedTokenizerFast"  # readable by 4.27.1
                data = json.dumps(config).encode()
            (into / path.name).write_bytes(data)
    return into


def harness_side(jobs: list[dict], official: dict) -> collections.Counter:
    from lamp_plugins.bm25 import okapi_scores, ranking_from_scores
    from transformers import AutoTokenizer

    from lamp_harness.contracts import Example, ProfileItem
    from lamp_harness.registry import host
    from lamp_harness.tokens import HFTokenCounter

    stats: collections.Counter = collections.Counter()
    for job in jobs:
        tokens = HFTokenCounter(AutoTokenizer.from_pretrained(job["tokenizer"]))
        task = host().registry.create("task", NAMES[job["task"]])
        records = json.loads(Path(job["records"]).read_text())[job["task"]]
        examples = [Example(r["id"], r["input"], tuple(ProfileItem(str(i), i, p) for i, p in enumerate(r["profile"])))
                    for r in records]
        scores = okapi_scores([task.query(e) for e in examples],
                              [[task.document(item) for item in e.profile] for e in examples])
        rankings = [ranking_from_scores(s) for s in scores]
        for k in job["ks"]:
            for budget in job["budgets"]:
                group = (job["name"], job["task"], k, budget)
                for example, ranking in zip(examples, rankings, strict=True):
                    want_prompt, want_top = official["|".join((job["name"], job["task"], example.id, str(k),
                                                               str(budget)))]
                    top = list(ranking[:k])
                    prompt = task.prompt(example, [example.profile[i] for i in top], tokens, budget)
                    stats[group, "n"] += 1
                    stats[group, "top"] += top == want_top
                    stats[group, "prompt"] += prompt == want_prompt
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lamp-repo", type=Path, required=True, help="checkout of LaMP-Benchmark/LaMP")
    parser.add_argument("--official-python", required=True, help="python of the pinned environment")
    parser.add_argument("--tokenizer", action="append", required=True, help="NAME=FOLDER (repeatable)")
    parser.add_argument("--lamp7", type=Path, help="folder with the real LaMP-7 dev_questions.json")
    parser.add_argument("--budgets", default="8,12,16,24,32,48,64,256")
    parser.add_argument("--ks", default="1,2,4")
    args = parser.parse_args()
    budgets = [int(b) for b in args.budgets.split(",")]
    ks = [int(k) for k in args.ks.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "synthetic.json").write_text(json.dumps(synthetic()))
        jobs = []
        for spec in args.tokenizer:
            name, _, folder = spec.partition("=")
            readable = str(readable_copy(Path(folder).expanduser(), work / f"tok-{name}"))
            jobs += [{"name": f"{name}-synthetic", "tokenizer": readable, "task": task,
                      "records": str(work / "synthetic.json"), "ks": ks, "budgets": budgets} for task in TASKS]
            if args.lamp7:
                questions = json.loads((args.lamp7 / "dev_questions.json").read_text())
                (work / "lamp7.json").write_text(json.dumps({"LaMP-7": questions}))
                jobs.append({"name": f"{name}-lamp7-dev", "tokenizer": readable, "task": "LaMP-7",
                             "records": str(work / "lamp7.json"), "ks": ks, "budgets": [64, 256]})
        (work / "jobs.json").write_text(json.dumps(jobs))
        (work / "official_side.py").write_text(OFFICIAL_SIDE)
        (work / "stub").mkdir()
        (work / "stub" / "torch.py").write_text('"""Stub: the prompt code imports torch for Contriever only."""\n')
        subprocess.run([args.official_python, str(work / "official_side.py"), str(args.lamp_repo / "LaMP"),
                        str(work / "jobs.json"), str(work / "official.json"), str(work / "stub")], check=True,
                       stdout=subprocess.DEVNULL)
        stats = harness_side(jobs, json.loads((work / "official.json").read_text()))
    total: collections.Counter = collections.Counter()
    for group in sorted({g for g, _ in stats}):
        n, top, prompt = stats[group, "n"], stats[group, "top"], stats[group, "prompt"]
        total.update(n=n, top=top, prompt=prompt)
        mark = "" if top == prompt == n else "   <- differs"
        print(f"{group[0]:24s} {group[1]} k={group[2]} L={group[3]:<4d} top-k {top}/{n} prompts {prompt}/{n}{mark}")
    print(f"TOTAL: top-k lists identical {total['top']}/{total['n']}, prompts identical {total['prompt']}/{total['n']}")
    sys.exit(0 if total["top"] == total["prompt"] == total["n"] else 1)


if __name__ == "__main__":
    main()
