"""``lamp run``: run one experiment or a whole matrix, resumably."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from lamp_harness.cli import app
from lamp_harness.cli.options import (
    SEED_MAX,
    DataDir,
    DataSources,
    GeneratorArgs,
    Limit,
    MaybeDevice,
    MaybePreset,
    MaybePromptBudget,
    MaybeScheme,
    MaybeSeed,
    NprocPerNode,
    PersonalizerArgs,
    Quiet,
    RetrieverArgs,
    TaskArgs,
)
from lamp_harness.errors import lamp_error
from lamp_harness.options import check_args, check_device, check_matrix_options, parse_kv

_LIST = "Comma list allowed: every combination is run."


def split_list(value: str | None) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``."""
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def without_option(argv: list[str], option: str) -> list[str]:
    """``argv`` without ``option VALUE`` / ``option=VALUE`` (what a launcher hands its workers)."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == option:
            skip = True
        elif not arg.startswith(option + "="):
            out.append(arg)
    return out


def data_sources(value: Any, where: str) -> tuple[str | None, dict[str, str]]:
    """``--data``: ``NAME`` for every task, ``TASK=NAME`` for one, or a comma list of both
    (``lamp-7=demo,toy-sentiment=toy``); in a matrix file also a table ``{lamp-7 = "demo"}``.
    Returns the default source and the per-task ones."""
    if value is None:
        return None, {}
    if isinstance(value, dict):
        pairs = [f"{k}={v}" for k, v in value.items()]
    elif isinstance(value, (list, tuple)):
        pairs = [str(v) for v in value]
    else:
        pairs = split_list(str(value))
    if not [pair for pair in pairs if str(pair).strip()]:
        # `--data "$DATA"` with DATA unset would otherwise send every task to its default source.
        raise lamp_error(
            f"--data {str(value)!r} names no data source",
            where=where,
            fix="Pass e.g. --data demo (or --data lamp-7=demo), or leave --data out for each task's own source.",
        )
    default: str | None = None
    per_task: dict[str, str] = {}
    for pair in pairs:
        task_name, sep, source = pair.partition("=")
        if not sep:
            if default is not None and default != pair.strip():
                raise lamp_error(
                    f"--data names two default sources, {default!r} and {pair.strip()!r}",
                    where=where,
                    fix="Give one NAME, and TASK=NAME for the other tasks (e.g. --data demo,toy-sentiment=toy).",
                )
            default = pair.strip()
        elif not task_name.strip() or not source.strip():
            raise lamp_error(
                f"--data entry {pair!r} is not TASK=SOURCE",
                where=where,
                fix="Write e.g. --data lamp-7=demo,toy-sentiment=toy.",
            )
        else:
            name, source = task_name.strip(), source.strip()
            if per_task.get(name, source) != source:
                raise lamp_error(
                    f"--data gives task {name!r} two sources, {per_task[name]!r} and {source!r}",
                    where=where,
                    fix=f"Keep one of them (e.g. --data {name}={source}).",
                )
            per_task[name] = source
    return default, per_task


def component_args(pairs: list[str], option: str) -> dict[str, dict[str, str]]:
    """``key=value`` applies to every component of the kind; ``name:key=value`` to one of them."""
    result: dict[str, dict[str, str]] = {}
    for pair in pairs:
        target, sep, rest = pair.partition(":")
        if sep and "=" not in target:
            result.setdefault(target.strip().lower(), {}).update(parse_kv([rest], option))
        else:
            result.setdefault("*", {}).update(parse_kv([pair], option))
    return result


def read_config(path: Path) -> dict[str, Any]:
    """A matrix file (TOML): the same keys as the command's options (see examples/matrix.toml).

    Checked against :data:`CONFIG_SCHEMA` before any work: a missing file, a folder, bad UTF-8, a
    TOML syntax error (with its line), an unknown key (with the closest valid one) or a value of
    the wrong type or range is a one-line error naming the file and line."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    fix = "See examples/matrix.toml for the format."
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise lamp_error("matrix file not found", where=str(path), fix="Check the path. " + fix) from None
    except IsADirectoryError:
        raise lamp_error(
            "is a folder, not a matrix file", where=str(path), fix="Pass a .toml file, e.g. --config examples/matrix.toml."
        ) from None
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise lamp_error(
            f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x})", where=f"{path}:{line}", fix="Save the file as UTF-8."
        ) from None
    except OSError as exc:
        raise lamp_error(f"cannot read it ({exc.strerror or exc})", where=str(path)) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        found = re.search(r"\(at line (\d+)(?:, column (\d+))?\)", message)
        where = f"{path}:{found.group(1)}" if found else str(path)
        message = re.sub(r"\s*\(at line \d+(?:, column \d+)?\)", "", message)
        raise lamp_error(f"invalid TOML: {message}", where=where, fix="Fix the syntax. " + fix) from None
    data = {key.replace("_", "-"): value for key, value in data.items()}
    check_config(data, path, text)
    return data


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _names(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))


def _ints(value: Any) -> bool:
    items = value if isinstance(value, list) else [value]
    if isinstance(value, str):
        items = split_list(value)
    try:
        return bool(items) and all((_is_int(v) or isinstance(v, str)) and int(v) >= 1 for v in items)
    except ValueError:
        return False


def _table(value: Any) -> bool:
    return isinstance(value, dict)


CONFIG_SCHEMA: dict[str, tuple[Callable[[Any], bool], str]] = {
    "task": (_names, 'a name or a list of names, e.g. ["lamp-7"]'),
    "personalizer": (_names, 'a name or a list of names, e.g. ["none", "ipa"]'),
    "retriever": (_names, 'a name or a list of names, e.g. ["bm25"]'),
    "generator": (_names, "a model or a list of models"),
    "k": (_ints, "a whole number >= 1 or a list of them, e.g. [1, 4]"),
    "split": (lambda v: isinstance(v, str), "a string: train, dev or test"),
    "data": (
        lambda v: isinstance(v, str) or (isinstance(v, dict) and all(isinstance(x, str) for x in v.values())),
        "a source as a string (lamp, demo) or a table of task = source",
    ),
    "data-dir": (lambda v: isinstance(v, str) and bool(v.strip()), "a folder path as a string"),
    "scheme": (lambda v: v in ("user", "time", "temporal"), '"user" or "time" (alias "temporal")'),
    "limit": (lambda v: _is_int(v) and v >= 1, "a whole number >= 1"),
    "preset": (lambda v: isinstance(v, str), "a preset name as a string (see `lamp models`)"),
    "seed": (lambda v: _is_int(v) and 0 <= v <= SEED_MAX, f"a whole number from 0 to {SEED_MAX}"),
    "decode": (lambda v: v in ("generate", "labels"), '"generate" or "labels"'),
    "reporter": (_names, 'a reporter name or a list of names, e.g. ["mlflow"]'),
    "prompt-budget": (lambda v: v in ("official", "strict"), '"official" or "strict"'),
    "out": (lambda v: isinstance(v, str) and bool(v.strip()), "a folder path as a string"),
    "batch-size": (lambda v: (_is_int(v) and v >= 1) or v == "auto", 'a whole number >= 1 or "auto"'),
    "num-beams": (lambda v: _is_int(v) and v >= 1, "a whole number >= 1"),
    "max-input-tokens": (lambda v: _is_int(v) and v >= 1, "a whole number >= 1"),
    "device": (lambda v: isinstance(v, str), "a string: auto, cpu, cuda or mps"),
    "checkpoint": (lambda v: isinstance(v, str) and bool(v.strip()), "a folder path as a string"),
    "retriever-args": (_table, "a table, e.g. [retriever-args.bm25]"),
    "personalizer-args": (_table, "a table, e.g. [personalizer-args.pplug]"),
    "generator-args": (_table, "a table, e.g. [generator-args]"),
    "task-args": (_table, "a table, e.g. [task-args] or [task-args.lamp-7]"),
    "train-args": (_table, "a table, e.g. [train-args]"),
    "judge": (lambda v: isinstance(v, str) and bool(v.strip()), 'a judge as a string, e.g. "openai:MODEL"'),
    "judge-args": (_table, "a table, e.g. [judge-args]"),
    "group": (lambda v: isinstance(v, list) and all(isinstance(g, dict) for g in v), "an array of tables ([[group]])"),
}
"""Every key of a matrix file: whether a value is valid, and what a valid one looks like."""


def check_config(data: dict[str, Any], path: Path, text: str = "") -> None:
    """One-line errors for unknown keys (with a did-you-mean) and values of the wrong type."""
    import difflib

    for key, value in data.items():
        where = f"{path}:{_line_of(text, key)}" if _line_of(text, key) else str(path)
        if key not in CONFIG_SCHEMA:
            close = difflib.get_close_matches(key, list(CONFIG_SCHEMA), n=1)
            hint = f"Did you mean {close[0]!r}? " if close else ""
            raise lamp_error(f"unknown key {key!r}", where=where, fix=f"{hint}Valid keys: {', '.join(CONFIG_SCHEMA)}.")
        valid, expected = CONFIG_SCHEMA[key]
        if not valid(value):
            raise lamp_error(f"{key} = {_show(value)} is not valid", where=where, fix=f"Write {expected}.")
        if key.endswith("-args"):
            _check_secrets(value, f"[{key}]", path, text)
        if key == "group":
            for group in value:
                check_config({k.replace("_", "-"): v for k, v in group.items()}, path, text)


def _check_secrets(table: dict[str, Any], name: str, path: Path, text: str) -> None:
    """A one-line error naming the file and line for a secret in an arguments table (nested
    tables such as ``[retriever-args.bm25]`` included)."""
    for key, value in table.items():
        if isinstance(value, dict):
            _check_secrets(value, f"{name.rstrip(']')}.{key}]", path, text)
            continue
        line = _line_of(text, str(key))
        check_args({str(key): value}, name, where=f"{path}:{line}" if line else str(path))


def _line_of(text: str, key: str) -> int | None:
    """The line of ``key = ...`` (or ``[key``) in a TOML text, for error messages."""
    variants = {key, key.replace("-", "_")}
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip().lstrip("[").strip()
        for name in variants:
            if re.match(rf"{re.escape(name)}\s*(=|\]|\.)", stripped) or stripped.startswith(f'"{name}"'):
                return number
    return None


def _show(value: Any) -> str:
    import json

    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return split_list(str(value))


def _stringify(table: Any, where: str) -> dict[str, str]:
    if not isinstance(table, dict):
        raise lamp_error(f"{where} must be a table of key = value", fix="See examples/matrix.toml.")
    return {str(k).replace("-", "_"): str(v).lower() if isinstance(v, bool) else str(v) for k, v in table.items()}


@app.command("run")
def run(
    task: str = typer.Option(None, "--task", "-t", help=f"Task(s), e.g. lamp-7 or lamp-1,lamp-3. {_LIST}"),
    personalizer: str = typer.Option(
        None, "--personalizer", "-p", help=f"Method(s): none, ipa, fid, pplug, pplug+retrieval... {_LIST} [default: none]"
    ),
    retriever: str = typer.Option(
        None,
        "--retriever",
        "-r",
        help=f"Retriever(s): bm25, contriever, dense, recency, random... {_LIST} "
        "Ignored for methods that use no retrieval (none).",
    ),
    k: str = typer.Option(None, "--k", help=f"Retrieved items per prompt. {_LIST} [default: 1]"),
    generator: str = typer.Option(
        None,
        "--generator",
        "-g",
        help="Model alias, hub id or local path (served by the 'hf' plugin); or a "
        "generator plugin's name (e.g. my-gen: its own default model); or "
        "PLUGIN:MODEL (e.g. my-gen:my-model, its model argument). "
        f"[default: the preset's generator] {_LIST}",
    ),
    preset: MaybePreset = None,
    data: DataSources = None,
    data_dir: DataDir = None,
    split: str = typer.Option(None, "--split", help="train, dev or test (validation = dev). [default: dev]"),
    scheme: MaybeScheme = None,
    limit: Limit = None,
    out: Path = typer.Option(None, "--out", "-o", help="Run folder: one sub-folder per cell. [default: runs]"),
    config: Path = typer.Option(
        None,
        "--config",
        "-c",
        help="Matrix file (TOML) with the same keys as these options; options "
        "given on the command line win. Example: examples/matrix.toml",
    ),
    decode: str = typer.Option(
        None,
        "--decode",
        help="generate (free generation, as in the papers) or labels (score every "
        "label of a classification task and pick the best). [default: generate]",
    ),
    prompt_budget: MaybePromptBudget = None,
    batch_size: str = typer.Option(None, "--batch-size", help="Generation batch size: N or auto."),
    num_beams: int = typer.Option(None, "--num-beams", min=1, help="Beam width (papers: 4; 1 = greedy)."),
    max_input_tokens: int = typer.Option(
        None, "--max-input-tokens", min=1, help="Prompt budget L in generator tokens. [default: 256]"
    ),
    retriever_arg: RetrieverArgs = [],
    personalizer_arg: PersonalizerArgs = [],
    generator_arg: GeneratorArgs = [],
    task_arg: TaskArgs = [],
    judge: str = typer.Option(
        None,
        "--judge",
        help="The judge of judged metrics (LaMP-QA's aspect score): any generator, in "
        "the forms of --generator (a model for hf, PLUGIN, PLUGIN:MODEL), e.g. "
        "--judge openai:Qwen/Qwen2.5-32B-Instruct. Its identity is part of the metric's "
        "name and of the cell id; its calls are cached in $LAMP_HOME/judge. See "
        "docs/judges.md. [default: each judged metric's default for the preset]",
    ),
    judge_arg: list[str] = typer.Option(
        [],
        "--judge-arg",
        help="KEY=VALUE for the judge generator (as --generator-arg, e.g. "
        "base_url=http://127.0.0.1:8000/v1), or its decoding: parse_retries=N, "
        "max_new_tokens=N, decode=generate|labels (labels: the best of the "
        "metric's allowed answers by log-likelihood; see docs/judges.md) "
        "(repeatable).",
    ),
    summarizer: str = typer.Option(
        None,
        "--summarizer",
        help="The generator that writes per-user profile summaries for the "
        "methods that use them (pag, oppu+summary): the same forms as "
        "--generator. [default: the run's generator]",
    ),
    summarizer_arg: list[str] = typer.Option(
        [],
        "--summarizer-arg",
        help="KEY=VALUE for the summarizer, as --generator-arg (repeatable), e.g. --summarizer-arg num_beams=1",
    ),
    train_arg: list[str] = typer.Option(
        [],
        "--train-arg",
        help="KEY=VALUE training setting for trainable methods trained "
        "before their cell (epochs, max_steps, batch_size, lr, limit...), "
        "e.g. --train-arg max_steps=20",
    ),
    checkpoint: Path = typer.Option(None, "--checkpoint", help="Trained weights from `lamp train` for a trainable method."),
    seed: MaybeSeed = None,
    device: MaybeDevice = None,
    reporter: list[str] = typer.Option(
        [],
        "--reporter",
        help="Also report to an experiment tracker (repeatable or a comma "
        "list): mlflow (one MLflow run per cell), wandb (one W&B run per "
        "cell); any installed reporter plugin. Also: reporter = [...] in "
        "--config, or LAMP_REPORTERS=mlflow. See `lamp plugins`.",
    ),
    force: bool = typer.Option(
        False,
        "--force",
        help="Recompute cells that an earlier run finished (a remote "
        "model is asked again: the openai generator's response cache is not read).",
    ),
    allow_stale: bool = typer.Option(
        False,
        "--allow-stale",
        help="Keep finished cells computed with other versions of their plugins "
        "(with a warning) instead of recomputing them.",
    ),
    quiet: Quiet = False,
    nproc_per_node: NprocPerNode = None,
) -> None:
    """Run personalization methods on LaMP tasks and score them.

    Every cell (task x personalizer x retriever x k x generator) gets its own folder under --out with
    config.json, predictions.jsonl, metrics.json and timing.json. Re-running the same command skips
    finished cells and resumes interrupted ones.

    Example: lamp run --task lamp-7 --personalizer none,ipa --retriever bm25 --k 1 --data demo
    """
    from rich.console import Console

    from lamp_harness import distributed
    from lamp_harness.data import SPLIT_ALIASES
    from lamp_harness.runner import Matrix, run_matrix
    from lamp_harness.secrets import RedactedStream

    if nproc_per_node and nproc_per_node > 1 and not distributed.detect_world().distributed:
        from lamp_harness.cli import ARGV

        raise typer.Exit(distributed.launch(nproc_per_node, without_option(ARGV, "--nproc-per-node")))

    cfg: dict[str, Any] = read_config(config) if config else {}

    def pick(cli: Any, key: str, default: Any) -> Any:
        return cli if cli is not None else cfg.get(key, default)

    if batch_size is not None and batch_size != "auto" and not (batch_size.isdigit() and int(batch_size) >= 1):
        raise lamp_error(
            f"--batch-size {batch_size!r} is not a whole number >= 1 or auto",
            fix="Pass e.g. --batch-size 8 or --batch-size auto.",
        )
    gen_args = _stringify(cfg.get("generator-args", {}), "[generator-args]")
    gen_args.update(parse_kv(generator_arg, "--generator-arg"))
    for key, value in (
        ("batch_size", pick(batch_size, "batch-size", None)),
        ("num_beams", pick(num_beams, "num-beams", None)),
        ("max_input_tokens", pick(max_input_tokens, "max-input-tokens", None)),
    ):
        if value is not None:
            gen_args[key] = str(value)

    def selection(part: dict[str, Any], where: str) -> dict[str, Any]:
        """The selectors of the whole matrix or of one ``[[group]]`` (command-line values win)."""
        tasks = split_list(task) or _as_list(part.get("task"))
        if not tasks:
            raise lamp_error(
                "no task given", where=where, fix="Pass --task lamp-7 (or a comma list), or task = [...] in --config."
            )
        ks_raw = split_list(k) or _as_list(part.get("k")) or ["1"]
        try:
            ks = tuple(int(x) for x in ks_raw)
        except ValueError:
            raise lamp_error(
                f"k {','.join(ks_raw)!r} is not a list of integers", where=where, fix="Write e.g. --k 1,4."
            ) from None
        if any(x < 1 for x in ks):
            raise lamp_error("k values must be at least 1", where=where, fix="Write e.g. --k 1,4.")
        personalizers = tuple(split_list(personalizer) or _as_list(part.get("personalizer")) or ["none"])
        personalizer_args = tables(part, "personalizer-args", personalizer_arg, "--personalizer-arg")
        if summarizer or summarizer_arg:
            with_summarizer(personalizers, personalizer_args, where)
        return {
            "tasks": tuple(tasks),
            "personalizers": personalizers,
            "retrievers": tuple(split_list(retriever) or _as_list(part.get("retriever"))),
            "ks": ks,
            "generators": tuple(split_list(generator) or _as_list(part.get("generator"))) or (None,),
            "personalizer_args": personalizer_args,
            "retriever_args": tables(part, "retriever-args", retriever_arg, "--retriever-arg"),
        }

    def with_summarizer(names: tuple[str, ...], args: dict[str, dict[str, str]], where: str) -> None:
        """--summarizer / --summarizer-arg as the arguments of the personalizers that write
        summaries (those declaring ``takes_summarizer``)."""
        from lamp_harness.registry import host

        extra = {"summarizer": summarizer} if summarizer else {}
        extra.update({f"summarizer.{k}": v for k, v in parse_kv(summarizer_arg, "--summarizer-arg").items()})
        takers = [n for n in names if getattr(host().registry.get("personalizer", n).load(), "takes_summarizer", False)]
        if not takers:
            raise lamp_error(
                "--summarizer applies to no personalizer of the matrix (none writes summaries)",
                where=where,
                fix="Add a summary method such as pag, or drop --summarizer.",
            )
        for name in takers:
            args.setdefault(name.lower(), {}).update(extra)

    def tables(part: dict[str, Any], key: str, cli_pairs: list[str], option: str) -> dict[str, dict[str, str]]:
        merged: dict[str, dict[str, str]] = {}
        for name, table in (part.get(key) or {}).items():
            if isinstance(table, dict):
                merged[name.lower()] = _stringify(table, f"[{key}.{name}]")
            else:
                merged.setdefault("*", {})[name.replace("-", "_")] = str(table)
        for name, table in component_args(cli_pairs, option).items():
            merged.setdefault(name, {}).update(table)
        return merged

    where = str(config) if config else "lamp run"
    task_args = tables(cfg, "task-args", task_arg, "--task-arg")
    groups = cfg.get("group", [])
    if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
        raise lamp_error("group must be an array of tables ([[group]])", where=where, fix="See examples/demo.toml.")
    group_keys = {"task", "personalizer", "retriever", "k", "generator", "retriever-args", "personalizer-args"}
    for i, g in enumerate(groups):
        bad = sorted({key.replace("_", "-") for key in g} - group_keys)
        if bad:
            raise lamp_error(
                f"[[group]] {i + 1} has key(s) {', '.join(bad)} that a group cannot set",
                where=where,
                fix=f"A group sets only {', '.join(sorted(group_keys))}; put shared settings at the top of the file.",
            )
    selected = [
        selection({**cfg, **{key.replace("_", "-"): v for key, v in g.items()}}, f"{where} [[group]] {i + 1}")
        for i, g in enumerate(groups)
    ]
    base = selection(cfg, where) if not selected or split_list(task) or cfg.get("task") else selected[0]

    data_dir_value = pick(data_dir, "data-dir", None)
    checkpoint_value = pick(checkpoint, "checkpoint", None)
    if checkpoint_value:
        from lamp_harness.training import resolve_checkpoint

        resolve_checkpoint(Path(checkpoint_value))  # missing or damaged: fail before any work
    decode_value = pick(decode, "decode", "generate")
    if decode_value not in ("generate", "labels"):
        raise lamp_error(f"--decode {decode_value!r} is not generate or labels", fix="Pass --decode labels.")
    from lamp_harness.data import check_scheme
    from lamp_harness.options import prompt_budget as checked_budget

    budget_value = checked_budget(str(pick(prompt_budget, "prompt-budget", "official")))
    data_default, task_data = data_sources(pick(data, "data", None), where)
    matrix = Matrix(
        **base,
        groups=tuple(Matrix(**sel) for sel in selected),
        split=SPLIT_ALIASES.get(pick(split, "split", "dev"), pick(split, "split", "dev")),
        data=data_default,
        task_data=task_data,
        data_dir=Path(data_dir_value) if data_dir_value else None,
        scheme=check_scheme(pick(scheme, "scheme", "user")),
        limit=pick(limit, "limit", None),
        preset=pick(preset, "preset", "offline"),
        seed=int(pick(seed, "seed", 0)),
        decode=decode_value,
        prompt_budget=budget_value,
        generator_args=gen_args,
        task_args=task_args,
        judge=pick(judge, "judge", None),
        judge_args={**_stringify(cfg.get("judge-args", {}), "[judge-args]"), **parse_kv(judge_arg, "--judge-arg")},
        train_args={**_stringify(cfg.get("train-args", {}), "[train-args]"), **parse_kv(train_arg, "--train-arg")},
        checkpoint=Path(checkpoint_value) if checkpoint_value else None,
        device=check_device(pick(device, "device", "auto")),
        reporters=tuple(
            dict.fromkeys([*_as_list(cfg.get("reporter")), *(name for value in reporter for name in split_list(value))])
        ),
    )
    import os

    from lamp_harness.io import writable_dir
    from lamp_harness.registry import REPORTERS_ENV, host

    console = Console(file=RedactedStream("stderr"))  # no line repeats a secret
    # An unknown reporter or its missing library is refused before anything is written.
    for name in host().enable_reporters([*matrix.reporters, *os.environ.get(REPORTERS_ENV, "").split(",")]):
        console.print(f"reporter [bold]{name}[/] enabled")
    check_matrix_options(matrix, host().registry)  # every cell's component options, before any work
    out_dir = writable_dir(Path(pick(out, "out", "runs")), "--out")
    world = distributed.init()
    run_matrix(matrix, out_dir, force=force, console=console, progress=not quiet and world.is_main, allow_stale=allow_stale)
