"""Fidelity check: the official LaMP prompt code, run under its own pinned environment, against the
harness, prompt for prompt and top-k list for top-k list.

Needs (none of it is part of the project, and none of it is committed):

- a checkout of the official code (LaMP-Benchmark/LaMP): ``--lamp-repo PATH`` (the folder holding
  ``LaMP/prompts/prompts.py``);
- a Python environment with its pins: ``--official-python PATH``, e.g. made with
  ``python -m venv /tmp/lamp-official && /tmp/lamp-official/bin/pip install numpy==1.24.2
  transformers==4.27.1 tokenizers==0.13.3 rank_bm25==0.2.2`` (torch is not needed: a stub stands
  in for the Contriever import);
- tokenizers (``--tokenizer NAME=FOLDER_OR_ALIAS``, repeatable; an alias such as ``smollm2-135m-instruct`` or
  ``minilm`` is resolved, and materialized, by the harness) that tokenizers 0.13 can read: a
  ``tokenizer.json`` whose BPE merges are lists is rewritten into a temporary copy with ``"a b"``
  strings. ``--end-token NAME`` adds a T5-style variant ``NAME+eos`` of that tokenizer whose every
  encoding ends with its end-of-sequence token (T5's ``</s>``), the case where a budget of exactly
  0 keeps the whole text.

Records: deterministic synthetic records of all seven tasks with duplicated items (tied BM25
scores) and profiles of 1-130 items, and real records (``--real TASK=FOLDER``, repeatable: every
``*_questions.json`` in the folder, e.g. ``--real LaMP-7=path/to/LaMP-7/user``).
Prints the share of identical prompts and top-k lists per (data set, tokenizer, task, k, L), and
the total; ``--summary FILE`` also writes them as Markdown (per data set, tokenizer, budget and k;
per data set and task), with the versions on both sides. The committed summary
``benchmarks/results/official_prompts.md`` was made with::

    nice -n 10 .venv/bin/python benchmarks/official_prompts.py --lamp-repo /tmp/lamp-src \\
        --lamp-commit 38c9d4d87629 --official-python /tmp/lamp-official/bin/python \\
        --tokenizer smollm2=smollm2-135m-instruct --tokenizer minilm=minilm --end-token smollm2 \\
        --real LaMP-7=path/to/LaMP-7/user --real LaMP-1=path/to/LaMP-1/user \\
        --summary benchmarks/results/official_prompts.md

(``/tmp/lamp-src``: ``git clone https://github.com/LaMP-Benchmark/LaMP /tmp/lamp-src``.)
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
NAMES = {
    "LaMP-1": "lamp-1",
    "LaMP-2": "lamp-2",
    "LaMP-3": "lamp-3",
    "LaMP-4": "lamp-4",
    "LaMP-5": "lamp-5",
    "LaMP-6": "lamp-6",
    "LaMP-7": "lamp-7",
}
WORDS = (
    "the a of to in and is was for on with that by this be are from at as it an or deep learning "
    "model data graph network user tweet movie review paper title news level ? ! . , don't it's "
    "we're I'm they've DeBarge  .. ' s n't"
).split(" ")

OFFICIAL_SIDE = r"""
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
                key = "|".join((job["name"], job["data"], job["task"], r["id"], str(k), str(L)))
                out[key] = [prompt(r["input"], r["profile"], job["task"]), top]
import numpy, rank_bm25, tokenizers, transformers
from importlib.metadata import version
out["__versions__"] = {"numpy": numpy.__version__, "transformers": transformers.__version__,
                       "tokenizers": tokenizers.__version__, "rank_bm25": version("rank_bm25"),
                       "python": sys.version.split()[0]}
json.dump(out, open(sys.argv[3], "w"))
"""


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
        "LaMP-1": lambda: (
            f'For an author who has written the paper with the title "{text(6)}", which reference '
            f'is related? Just answer with [1] or [2] without explanation. [1]: "{text(6)}" '
            f'[2]: "{text(6)}"'
        ),
        "LaMP-2": lambda: f"Which tag does this movie relate to? description: {text(rng.randint(3, 80))}",
        "LaMP-3": lambda: f"What is the score of the following review? review: {text(rng.randint(3, 80))}",
        "LaMP-4": lambda: f"Generate a headline for the following article: {text(rng.randint(3, 80))}",
        "LaMP-5": lambda: f"Generate a title for the following abstract of a paper: {text(rng.randint(3, 80))}",
        "LaMP-6": lambda: f"Generate a subject for the following email: {text(rng.randint(3, 80))}",
        "LaMP-7": lambda: (
            f"Paraphrase the following tweet without any explanation before or after it: {text(rng.randint(3, 40))}"
        ),
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


def readable_copy(folder: Path, into: Path, end_token: bool = False) -> Path:
    """``folder``'s tokenizer files, with list-style BPE merges rewritten for tokenizers 0.13; with
    ``end_token``, every encoding ends with the tokenizer's end-of-sequence token (as T5's)."""
    into.mkdir(parents=True, exist_ok=True)
    eos = None
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        if (folder / name).is_file():
            value = json.loads((folder / name).read_text()).get("eos_token")
            eos = eos or (value.get("content") if isinstance(value, dict) else value)
    for path in folder.iterdir():
        if path.is_file() and (path.name.startswith(("tokenizer", "special_tokens")) or path.suffix in (".txt", ".model")):
            data = path.read_bytes()
            if path.name == "tokenizer.json":
                spec = json.loads(data)
                merges = spec.get("model", {}).get("merges")
                if merges and isinstance(merges[0], list):
                    spec["model"]["merges"] = [" ".join(m) for m in merges]
                if end_token:
                    if not eos:
                        raise SystemExit(f"{folder}: no eos_token to append (--end-token)")
                    ids = [t["id"] for t in spec.get("added_tokens", []) if t["content"] == eos]
                    ids = ids or [spec["model"]["vocab"][eos]]
                    spec["post_processor"] = {
                        "type": "TemplateProcessing",
                        "single": [{"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": eos, "type_id": 0}}],
                        "pair": [
                            {"Sequence": {"id": "A", "type_id": 0}},
                            {"Sequence": {"id": "B", "type_id": 1}},
                            {"SpecialToken": {"id": eos, "type_id": 1}},
                        ],
                        "special_tokens": {eos: {"id": eos, "ids": ids, "tokens": [eos]}},
                    }
                data = json.dumps(spec, ensure_ascii=False).encode()
            if path.name == "tokenizer_config.json":
                config = json.loads(data)
                config["tokenizer_class"] = "PreTrainedTokenizerFast"  # readable by 4.27.1
                for key in ("add_bos_token", "add_eos_token"):  # the post-processor decides
                    config.pop(key, None)
                data = json.dumps(config).encode()
            (into / path.name).write_bytes(data)
    return into


def tokenizer_folder(spec: str) -> Path:
    """A folder as given, or the folder of a harness model alias (materialized on first use)."""
    if Path(spec).expanduser().is_dir():
        return Path(spec).expanduser()
    from lamp_harness.base.io import lamp_home
    from lamp_harness.inputs.models import resolve_model
    from lamp_harness.plugin.contracts import RunContext

    role = "generator" if spec.startswith(("smollm", "flan")) else "bge"
    return Path(resolve_model(role, RunContext(lamp_home=lamp_home()), spec).path)


def harness_side(jobs: list[dict]) -> dict[str, list]:
    """The harness's prompt and top-k list of every (job, question, k, L), keyed like the official
    side's (computed while the official side runs)."""
    from lamp_plugins.bm25 import okapi_scores, ranking_from_scores
    from transformers import AutoTokenizer

    from lamp_harness.base.tokens import HFTokenCounter
    from lamp_harness.plugin.contracts import Example, ProfileItem
    from lamp_harness.plugin.registry import host

    out: dict[str, list] = {}
    for job in jobs:
        tokens = HFTokenCounter(AutoTokenizer.from_pretrained(job["tokenizer"]))
        task = host().registry.create("task", NAMES[job["task"]])
        records = json.loads(Path(job["records"]).read_text())[job["task"]]
        examples = [
            Example(r["id"], r["input"], tuple(ProfileItem(str(i), i, p) for i, p in enumerate(r["profile"])))
            for r in records
        ]
        scores = okapi_scores(
            [task.query(e) for e in examples], [[task.document(item) for item in e.profile] for e in examples]
        )
        rankings = [ranking_from_scores(s) for s in scores]
        for k in job["ks"]:
            for budget in job["budgets"]:
                for example, ranking in zip(examples, rankings, strict=True):
                    top = [int(i) for i in ranking[:k]]
                    prompt = task.prompt(example, [example.profile[i] for i in top], tokens, budget)
                    out["|".join((job["name"], job["data"], job["task"], example.id, str(k), str(budget)))] = [prompt, top]
    return out


def compare(ours: dict[str, list], official: dict[str, list]) -> collections.Counter:
    """Per (data set, tokenizer, task, k, L): questions, identical top-k lists, identical prompts."""
    stats: collections.Counter = collections.Counter()
    for key, (prompt, top) in ours.items():
        name, data, task, _, k, budget = key.split("|")
        want_prompt, want_top = official[key]
        group = (data, name, task, int(k), int(budget))
        stats[group, "n"] += 1
        stats[group, "top"] += top == want_top
        stats[group, "prompt"] += prompt == want_prompt
    return stats


def summary_markdown(stats: collections.Counter, versions: dict[str, str], args: argparse.Namespace) -> str:
    """The comparison as Markdown: per data set, tokenizer, budget and k (tasks summed), per data
    set and task, and the total."""
    import platform

    import transformers

    from lamp_harness import __version__

    def add(into: dict, key: tuple, group: tuple) -> None:
        row = into.setdefault(key, collections.Counter())
        row.update(n=stats[group, "n"], top=stats[group, "top"], prompt=stats[group, "prompt"])

    def cells(row: collections.Counter) -> str:
        mark = "" if row["top"] == row["prompt"] == row["n"] else " **differs**"
        return f"{row['n']:,} | {row['top']:,} | {row['prompt']:,}{mark}"

    groups = sorted({g for g, _ in stats})
    by_budget: dict[tuple, collections.Counter] = {}
    by_task: dict[tuple, collections.Counter] = {}
    total: collections.Counter = collections.Counter()
    for group in groups:
        data, name, task, k, budget = group
        add(by_budget, (data, name, budget, k), group)
        add(by_task, (data, name, task), group)
        total.update(n=stats[group, "n"], top=stats[group, "top"], prompt=stats[group, "prompt"])
    lines = [
        "# The official LaMP prompt code against the harness",
        "",
        "Made by `benchmarks/official_prompts.py` (its docstring gives the command). The official side is",
        f"`LaMP/prompts/prompts.py` of LaMP-Benchmark/LaMP{f' at {args.lamp_commit}' if args.lamp_commit else ''},"
        f" run under Python {versions.get('python')}",
        f"with numpy {versions.get('numpy')}, transformers {versions.get('transformers')}, tokenizers "
        f"{versions.get('tokenizers')} and rank_bm25 {versions.get('rank_bm25')}",
        f"(BM25 top-k: `BM25Okapi.get_top_n`). The harness side is lamp-harness {__version__} under Python "
        f"{platform.python_version()} with transformers {transformers.__version__} (`Task.prompt`, the `bm25`",
        "plugin's scores and numpy-1.24.2 tie order). A row counts questions; a question is identical when its",
        "top-k list (item indices) or its prompt string is the same byte for byte.",
        "",
        "Data sets: `synthetic` = deterministic records of all seven tasks (60 per task: random texts over a",
        "small vocabulary with the punctuation the decode clean-up touches, duplicated items, profiles of",
        "1-130 items); the others are real LaMP records (every `*_questions.json` of the folder given).",
        "Tokenizers: `smollm2` (SmolLM2-135M-Instruct's BPE), `minilm` (all-MiniLM-L6-v2's WordPiece, which",
        "adds `[CLS]`/`[SEP]`), `smollm2+eos` (SmolLM2's BPE with an end token appended to every encoding,",
        "as T5's `</s>`).",
        "",
        f"**Total: top-k lists identical {total['top']:,} of {total['n']:,}; prompts identical "
        f"{total['prompt']:,} of {total['n']:,}.**",
        "",
        "## Per data set, tokenizer, budget L and k (all tasks of the data set)",
        "",
        "| data set | tokenizer | L | k | questions | top-k identical | prompts identical |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for (data, name, budget, k), row in sorted(by_budget.items()):
        lines.append(f"| {data} | {name} | {budget} | {k} | {cells(row)} |")
    lines += [
        "",
        "## Per data set, tokenizer and task (all budgets and k)",
        "",
        "| data set | tokenizer | task | questions | top-k identical | prompts identical |",
        "|---|---|---|---:|---:|---:|",
    ]
    for (data, name, task), row in sorted(by_task.items()):
        lines.append(f"| {data} | {name} | {task} | {cells(row)} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lamp-repo", type=Path, required=True, help="checkout of LaMP-Benchmark/LaMP")
    parser.add_argument("--lamp-commit", default="", help="its commit, for the summary")
    parser.add_argument("--official-python", required=True, help="python of the pinned environment")
    parser.add_argument("--tokenizer", action="append", required=True, help="NAME=FOLDER or NAME=ALIAS (repeatable)")
    parser.add_argument(
        "--end-token",
        action="append",
        default=[],
        help="NAME of a --tokenizer to add a T5-style variant NAME+eos of (repeatable)",
    )
    parser.add_argument(
        "--real", action="append", default=[], help="TASK=FOLDER with real *_questions.json, e.g. LaMP-7=DIR (repeatable)"
    )
    parser.add_argument("--budgets", default="8,16,24,32,64,256", help="L for the synthetic records")
    parser.add_argument("--real-budgets", default="64,256", help="L for the real records")
    parser.add_argument("--ks", default="1,2,4")
    parser.add_argument("--summary", type=Path, help="also write the comparison as Markdown here")
    args = parser.parse_args()
    budgets = [int(b) for b in args.budgets.split(",")]
    real_budgets = [int(b) for b in args.real_budgets.split(",")]
    ks = [int(k) for k in args.ks.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "synthetic.json").write_text(json.dumps(synthetic()))
        real = []
        for spec in args.real:
            task, _, folder = spec.partition("=")
            if task not in TASKS:
                raise SystemExit(f"--real {spec}: the task must be one of {', '.join(TASKS)}")
            records = [r for f in sorted(Path(folder).glob("*_questions.json")) for r in json.loads(f.read_text())]
            (work / f"real-{task}.json").write_text(json.dumps({task: records}))
            real.append((task, work / f"real-{task}.json", f"{task} real ({len(records)} questions)"))
        tokenizers = []
        for spec in args.tokenizer:
            name, _, folder = spec.partition("=")
            source = tokenizer_folder(folder)
            tokenizers.append((name, str(readable_copy(source, work / f"tok-{name}"))))
            if name in args.end_token:
                tokenizers.append((f"{name}+eos", str(readable_copy(source, work / f"tok-{name}-eos", True))))
        jobs = []
        for name, readable in tokenizers:
            jobs += [
                {
                    "name": name,
                    "data": "synthetic",
                    "tokenizer": readable,
                    "task": task,
                    "records": str(work / "synthetic.json"),
                    "ks": ks,
                    "budgets": budgets,
                }
                for task in TASKS
            ]
            jobs += [
                {
                    "name": name,
                    "data": data,
                    "tokenizer": readable,
                    "task": task,
                    "records": str(path),
                    "ks": ks,
                    "budgets": real_budgets,
                }
                for task, path, data in real
            ]
        (work / "jobs.json").write_text(json.dumps(jobs))
        (work / "official_side.py").write_text(OFFICIAL_SIDE)
        (work / "stub").mkdir()
        (work / "stub" / "torch.py").write_text('"""Stub: the prompt code imports torch for Contriever only."""\n')
        # The two sides run at the same time (two processes); the comparison waits for both.
        official_run = subprocess.Popen(
            [
                args.official_python,
                str(work / "official_side.py"),
                str(args.lamp_repo / "LaMP"),
                str(work / "jobs.json"),
                str(work / "official.json"),
                str(work / "stub"),
            ],
            stdout=subprocess.DEVNULL,
        )
        try:
            ours = harness_side(jobs)
        finally:
            if official_run.wait() != 0:
                raise SystemExit(f"the official side failed (exit code {official_run.returncode})")
        official = json.loads((work / "official.json").read_text())
        versions = official.pop("__versions__")
        stats = compare(ours, official)
    total: collections.Counter = collections.Counter()
    for group in sorted({g for g, _ in stats}):
        n, top, prompt = stats[group, "n"], stats[group, "top"], stats[group, "prompt"]
        total.update(n=n, top=top, prompt=prompt)
        mark = "" if top == prompt == n else "   <- differs"
        print(
            f"{group[0]:28s} {group[1]:12s} {group[2]} k={group[3]} L={group[4]:<4d} top-k {top}/{n} "
            f"prompts {prompt}/{n}{mark}"
        )
    print(f"TOTAL: top-k lists identical {total['top']}/{total['n']}, prompts identical {total['prompt']}/{total['n']}")
    if args.summary:
        args.summary.parent.mkdir(parents=True, exist_ok=True)
        args.summary.write_text(summary_markdown(stats, versions, args))
    sys.exit(0 if total["top"] == total["prompt"] == total["n"] else 1)


if __name__ == "__main__":
    main()
