"""Count the answers that talk about the task instead of paraphrasing the tweet.

    python leaderboard/lamp7-finetuned/task_talk.py [RUNS_DIR] [--show LABEL]

Reads every cell under RUNS_DIR (default: this experiment's runs/): its label from config.json and
its outputs from predictions.jsonl. An answer "talks about the task" when it contains, as whole
words and in any case, one of the PHRASES below: apologies and refusals of an assistant, offers of
help, announcements of a rewrite, mentions of the tweet or of paraphrasing, or a repetition of the
instruction. It is a rough measure: a tweet that really says "I'm unable to connect" counts too,
and a chatty answer using none of the phrases does not. ``--show LABEL`` prints the matching
answers of the cells whose label starts with LABEL, with the phrases found, to check them by eye.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

PHRASES = (
    "I'm sorry for the confusion",
    "I'm unable to",
    "I can't assist",
    "I cannot",
    "help with that",
    "help you with",
    "assist with",
    "what to say",
    "here's a",
    "here is a",
    "original tweet",
    "the tweet",
    "rephrase",
    "rephrased",
    "paraphrase",
    "paraphrased",
    "paraphrasing",
    "as an AI",
    "without any explanation",
)
"""The phrases (matched as whole words, case-insensitively)."""

PATTERN = re.compile(r"\b(" + "|".join(re.escape(p) for p in PHRASES) + r")\b", re.IGNORECASE)


def talks_about_task(output: str) -> list[str]:
    """The phrases of :data:`PHRASES` that ``output`` contains (empty: it does not)."""
    return sorted({match.lower() for match in PATTERN.findall(output)})


def cells(runs: Path) -> list[tuple[str, list[str]]]:
    """``(label, outputs)`` of every finished cell under ``runs``, sorted by label."""
    found = []
    for config_path in sorted(runs.glob("*/config.json")):
        predictions = config_path.parent / "predictions.jsonl"
        if not predictions.is_file():
            continue
        label = json.loads(config_path.read_text(encoding="utf-8"))["label"]
        with predictions.open(encoding="utf-8") as lines:
            outputs = [json.loads(line)["output"] for line in lines if line.strip()]
        found.append((f"{label} [{config_path.parent.name}]", outputs))
    return sorted(found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="?", type=Path, default=Path(__file__).parent / "runs")
    parser.add_argument("--show", metavar="LABEL", help="print the matching answers of these cells")
    args = parser.parse_args()
    print("| cell | answers | talking about the task |\n|---|---:|---:|")
    for label, outputs in cells(args.runs):
        matching = [(output, talks_about_task(output)) for output in outputs]
        matching = [(output, found) for output, found in matching if found]
        print(f"| {label} | {len(outputs)} | {len(matching)} |")
        if args.show and label.startswith(args.show):
            for output, found in matching:
                print(f"    {found}: {' '.join(output.split())[:160]}")


if __name__ == "__main__":
    main()
