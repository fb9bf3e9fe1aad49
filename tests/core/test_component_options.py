"""Typed component options (:mod:`lamp_harness.plugin.options`): declared once per component, parsed
from ``KEY=VALUE`` strings, checked for every cell of a run before any work, listed by
``lamp plugins show``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import ClassVar

import pytest

from lamp_harness.base.errors import LampError
from lamp_harness.plugin.options import (
    NoOptions,
    Options,
    check_component_options,
    declared_options,
    option,
)
from lamp_harness.plugin.registry import host
from lamp_harness.run.cells import Matrix, check_options


@dataclass(frozen=True)
class Knobs(Options):
    depth: int = option(2, "how deep", minimum=1, maximum=8)
    rate: float = option(0.5, "how fast", above=0)
    strict: bool = option(False, "be strict")
    mode: str = option("fast", "the mode", choices=("fast", "exact"))
    label: str | None = option(None, "free text")
    batch: int | str = option("auto", "a number or auto", minimum=1, words=("auto",))


def _error(options: type[Options], **args: object) -> str:
    with pytest.raises(LampError) as caught:
        options.parse(args, "retriever 'knobs'")
    return str(caught.value)


def test_strings_become_typed_values_and_absent_keys_their_defaults() -> None:
    knobs = Knobs.parse({"depth": "3", "rate": "1e-1", "strict": "yes", "mode": " EXACT ", "batch": "16"}, "x")
    assert knobs == Knobs(depth=3, rate=0.1, strict=True, mode="exact", label=None, batch=16)
    assert Knobs.parse({}, "x") == Knobs()
    assert Knobs.parse({"mode": "", "batch": "Auto", "label": " kept as given "}, "x") == Knobs(
        mode="fast", batch="auto", label=" kept as given "
    )
    assert Knobs.parse({"depth": 4, "strict": True}, "x").depth == 4  # the Python API passes values
    assert Knobs.parse({}, "x", depth=5).depth == 5  # a default known only at run time


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({"depth": "two"}, "retriever 'knobs': argument depth='two' is not an integer. Pass e.g. depth=2."),
        ({"depth": "0"}, "retriever 'knobs': argument depth=0 must be at least 1"),
        ({"depth": "9"}, "retriever 'knobs': argument depth=9 must be at most 8. Pass e.g. depth=2."),
        ({"rate": "0"}, "retriever 'knobs': argument rate=0 must be above 0. Pass e.g. rate=0.5."),
        ({"rate": "nan"}, "retriever 'knobs': argument rate=nan is not a finite number. Pass e.g. rate=0.5."),
        (
            {"strict": "maybe"},
            "retriever 'knobs': argument strict='maybe' is not a boolean. Pass strict=true or strict=false.",
        ),
        (
            {"mode": "slow"},
            "retriever 'knobs': argument mode='slow' is not one of fast, exact. Pass mode=fast or mode=exact.",
        ),
        ({"batch": "many"}, "retriever 'knobs': argument batch='many' is not an integer. Pass e.g. batch=1."),
        (
            {"dpeth": "3"},
            "retriever 'knobs': unknown argument(s) dpeth (did you mean depth?). "
            "Valid keys: batch, depth, label, mode, rate, strict.",
        ),
        (
            {"colour": "red"},
            "retriever 'knobs': unknown argument(s) colour. Valid keys: batch, depth, label, mode, rate, strict.",
        ),
    ],
)
def test_a_bad_key_or_value_is_one_line_naming_the_component_and_the_fix(args, expected) -> None:
    assert _error(Knobs, **args) == expected


def test_no_options_refuses_every_key() -> None:
    assert NoOptions.parse({}, "x") == NoOptions()
    assert _error(NoOptions, k=1) == "retriever 'knobs': unknown argument(s) k. Valid keys: none."


def test_rules_across_options_run_after_parsing() -> None:
    @dataclass(frozen=True)
    class Pair(Options):
        low: int = option(0, "")
        high: int = option(10, "")

        def validate(self, owner: str) -> None:
            if self.low > self.high:
                raise LampError(f"{owner}: low={self.low} is above high={self.high}")

    assert Pair.parse({"low": "3"}, "x") == Pair(low=3)
    assert _error(Pair, low="11") == "retriever 'knobs': low=11 is above high=10"


def test_passed_on_keys_are_free_but_a_near_miss_of_a_declared_one_is_a_typo() -> None:
    @dataclass(frozen=True)
    class Loader(Options):
        passthrough: ClassVar[str] = "any other KEY=VALUE goes to the loader (load.KEY says so)"
        num_beams: int = option(4, "beam width", minimum=1)

    assert Loader.parse({"attn_implementation": "sdpa", "load.num_beam": "2"}, "x") == Loader()
    assert _error(Loader, num_beam="2") == (
        "retriever 'knobs': unknown argument num_beam (did you mean num_beams?). "
        "Valid keys: num_beams; any other KEY=VALUE goes to the loader (load.KEY says so)."
    )


def test_prefixed_keys_go_to_the_sub_component_and_any_other_key_is_still_checked() -> None:
    @dataclass(frozen=True)
    class WithHelper(Options):
        prefixes: ClassVar[tuple[str, ...]] = ("helper",)
        depth: int = option(2, "how deep", minimum=1)

    args = {"depth": "3", "helper.max_new_tokens": "9", "helper.model": "m"}
    assert WithHelper.parse(args, "x") == WithHelper(depth=3)
    assert WithHelper.sub_args(args, "helper") == {"max_new_tokens": "9", "model": "m"}
    assert _error(WithHelper, **{"helpr.model": "m"}).startswith("retriever 'knobs': unknown argument(s) helpr.model")
    assert _error(WithHelper, **{"helper.": "m"}).startswith("retriever 'knobs': unknown argument(s) helper.")
    assert _error(Knobs, **{"helper.model": "m"}).startswith("retriever 'knobs': unknown argument(s) helper.model")


def test_describe_lists_name_type_default_allowed_values_and_help() -> None:
    rows = {row.name: row for row in Knobs.describe()}
    assert list(rows) == ["depth", "rate", "strict", "mode", "label", "batch"]
    assert (rows["depth"].type, rows["depth"].default, rows["depth"].allowed, rows["depth"].help) == (
        "integer",
        "2",
        ">= 1, <= 8",
        "how deep",
    )
    assert (rows["rate"].type, rows["rate"].allowed) == ("number", "> 0")
    assert (rows["strict"].type, rows["strict"].default) == ("boolean", "false")
    assert (rows["mode"].allowed, rows["label"].default, rows["batch"].type) == ("fast | exact", "unset", "integer or auto")


BUILT_INS = [
    ("retriever", "bm25"),
    ("retriever", "recency"),
    ("retriever", "random"),
    ("retriever", "dense"),
    ("retriever", "contriever"),
    ("personalizer", "none"),
    ("personalizer", "ipa"),
    ("personalizer", "full"),
    ("personalizer", "fid"),
    ("personalizer", "pplug"),
    ("personalizer", "pplug+retrieval"),
    ("personalizer", "oppu"),
    ("personalizer", "oppu+retrieval"),
    ("personalizer", "oppu+summary"),
    ("personalizer", "pag"),
    ("generator", "hf"),
    ("generator", "vllm"),
    ("generator", "openai"),
]


@pytest.mark.parametrize(("kind", "name"), BUILT_INS, ids=[f"{k}-{n}" for k, n in BUILT_INS])
def test_every_migrated_built_in_declares_its_options_with_help(kind, name) -> None:
    declared = declared_options(host().registry.get(kind, name).load())
    assert declared is not None
    declared.parse({}, name)  # the defaults are valid
    assert all(row.help for row in declared.describe())


def test_the_built_ins_keep_their_recorded_values() -> None:
    """What a component records (its cache key, its describe()) keeps the types it had."""
    from lamp_plugins.bm25 import BM25Retriever
    from lamp_plugins.simple_retrievers import RandomRetriever

    assert BM25Retriever(k1="1.2").cache_key()["k1"] == 1.2
    assert BM25Retriever().params.b == 0.75
    assert RandomRetriever(None, seed="-3").seed == -3


def _matrix(personalizers, retrievers, personalizer_args, retriever_args, generator_args=None) -> Matrix:
    return Matrix(
        tasks=("lamp-7",),
        personalizers=personalizers,
        retrievers=retrievers,
        personalizer_args=personalizer_args,
        retriever_args=retriever_args,
        generator_args=generator_args or {},
    )


def test_the_check_reads_every_cell_of_every_group() -> None:
    registry = host().registry
    fine = _matrix(("none", "ipa", "pplug+retrieval"), ("bm25",), {"*": {}}, {"bm25": {"k1": "1.2"}})
    check_options(fine, registry)
    # pplug+retrieval gets its default retriever (dense, model=bge) when the matrix names none:
    # a *-argument that the default retriever does not take is found before any work.
    with pytest.raises(LampError, match="retriever 'dense': unknown argument"):
        check_options(_matrix(("pplug+retrieval",), (), {}, {"*": {"k1": "1"}}), registry)
    # A personalizer that takes no retriever never builds one: its retriever arguments are not read.
    check_options(_matrix(("none",), ("bm25",), {}, {"bm25": {"k2": "1"}}), registry)
    with pytest.raises(LampError, match="generator 'hf': unknown argument num_beam "):
        check_options(_matrix(("none",), (), {}, {}, {"num_beam": "2"}), registry)
    # An unknown component is left to the planner, which names the valid ones.
    check_component_options(registry, [("retriever", "no-such-retriever", {"x": "1"})])


RUN = ("run", "--task", "lamp-7", "--data", "demo", "--generator", "toy-echo", "--limit", "2", "--quiet")


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("Error")]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ("--personalizer", "none,ipa", "--retriever", "bm25", "--retriever-arg", "bm25:k2=1"),
            "Error: retriever 'bm25': unknown argument(s) k2 (did you mean k1?). Valid keys: b, epsilon, k1.",
        ),
        (
            ("--personalizer", "none,ipa", "--retriever", "bm25,random", "--retriever-arg", "random:seed=x"),
            "Error: retriever 'random': argument seed='x' is not an integer. Pass e.g. seed=1.",
        ),
        (
            ("--personalizer", "none,pplug", "--personalizer-arg", "pplug:aggregaton=mean"),
            "Error: personalizer 'pplug': unknown argument(s) aggregaton (did you mean aggregation?).",
        ),
        (
            ("--personalizer", "none,fid", "--retriever", "bm25", "--personalizer-arg", "fid:train=encoder"),
            "Error: personalizer 'fid': argument train='encoder' is not one of all, decoder. "
            "Pass train=all or train=decoder.",
        ),
        (
            ("--personalizer", "none,oppu", "--personalizer-arg", "oppu:rnak=4"),
            "Error: personalizer 'oppu': unknown argument(s) rnak (did you mean rank?).",
        ),
        (
            ("--personalizer", "none,pag", "--personalizer-arg", "pag:summary_tokens=0"),
            "Error: personalizer 'pag': argument summary_tokens=0 must be at least 1",
        ),
        (
            ("--personalizer", "none,oppu", "--personalizer-arg", "oppu:summarizer.max_new_tokens=9"),
            "Error: personalizer 'oppu': unknown argument(s) summarizer.max_new_tokens.",
        ),
    ],
    ids=[
        "retriever-key",
        "retriever-value",
        "personalizer-key",
        "personalizer-value",
        "oppu-key",
        "pag-value",
        "oppu-no-summarizer",
    ],
)
def test_a_bad_option_of_a_later_cell_fails_before_the_first_cell(toys, cli, tmp_path, args, expected) -> None:
    """The first cell (personalizer none) needs none of these options; before the check it ran,
    and the run failed only when the later cell built its component."""
    out = tmp_path / "runs"
    code, _, err = cli(*RUN, *args, "--out", str(out))
    assert code == 2 and "Traceback" not in err
    lines = _error_lines(err)
    assert len(lines) == 1 and lines[0].startswith(expected), err
    assert not out.exists()  # nothing was run, nothing written


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        ("chat_template=maybe", "Error: generator 'hf': argument chat_template='maybe' is not a boolean."),
        ("num_beam=2", "Error: generator 'hf': unknown argument num_beam (did you mean num_beams?)."),
        ("dtype=float8", "Error: generator 'hf': argument dtype='float8' is not one of auto, float32,"),
    ],
    ids=["value", "typo", "choice"],
)
def test_a_bad_generator_option_fails_before_the_model_loads(cli, tmp_path, arg, expected) -> None:
    out = tmp_path / "runs"
    code, _, err = cli(
        "run", "--task", "lamp-7", "--data", "demo", "--limit", "2", "--generator-arg", arg, "--out", str(out)
    )
    assert code == 2 and "Traceback" not in err and "Converting" not in err
    lines = _error_lines(err)
    assert len(lines) == 1 and lines[0].startswith(expected), err
    assert not out.exists()


def test_matrix_file_values_are_checked_before_any_work(toys, cli, tmp_path) -> None:
    config = tmp_path / "matrix.toml"
    config.write_text(
        'task = ["lamp-7"]\npersonalizer = ["none", "ipa"]\nretriever = ["bm25"]\ngenerator = ["toy-echo"]\n'
        'data = "demo"\nlimit = 2\n\n[retriever-args.bm25]\nk1 = "high"\n',
        encoding="utf-8",
    )
    out = tmp_path / "runs"
    code, _, err = cli("run", "--config", str(config), "--quiet", "--out", str(out))
    assert code == 2
    assert _error_lines(err) == ["Error: retriever 'bm25': argument k1='high' is not a number. Pass e.g. k1=1.5."]
    assert not out.exists()


def test_good_options_are_recorded_as_given(toys, cli, tmp_path) -> None:
    out = tmp_path / "runs"
    code, _, err = cli(*RUN, "--personalizer", "ipa", "--retriever", "bm25", "--retriever-arg", "k1=1.20", "--out", str(out))
    assert code == 0, err
    [config] = [json.loads(p.read_text(encoding="utf-8")) for p in out.glob("*/config.json")]
    assert config["retriever"] == {"name": "bm25", "k1": "1.20"}


def test_lamp_train_checks_its_options_before_any_work(cli, tmp_path) -> None:
    out = tmp_path / "ckpt"
    code, _, err = cli(
        "train", "--task", "lamp-7", "--personalizer", "pplug", "--data", "demo", "--personalizer-arg", "scale=big",
        "--out", str(out),
    )  # fmt: skip
    assert code == 2
    assert _error_lines(err) == [
        "Error: personalizer 'pplug': argument scale='big' is not one of official, norm. Pass scale=official or scale=norm."
    ]
    assert not out.exists()


PLUGIN = """
from dataclasses import dataclass

from lamp_harness.plugin.contracts import Retriever
from lamp_harness.plugin.hookspecs import hookimpl
from lamp_harness.plugin.options import Options, option


@dataclass(frozen=True)
class DepthOptions(Options):
    depth: int = option(2, "items looked at", minimum=1)
    order: str = option("newest", "which items first", choices=("newest", "oldest"))


class Deep(Retriever):
    name = "deep"
    options = DepthOptions

    def __init__(self, context=None, **args):
        self.opts = DepthOptions.parse(args, f"retriever {self.name!r}")

    def rank(self, queries):
        return [tuple(range(len(q.items))) for q in queries]


@hookimpl
def lamp_register(registry):
    registry.add_retriever("deep", Deep, "a third-party retriever with declared options")
"""


def test_a_third_party_component_declares_options_the_same_way(site, toys, cli, tmp_path) -> None:
    site.add("lamp-deep", "1.0", deep=PLUGIN)
    out = tmp_path / "runs"
    code, _, err = cli(
        *RUN, "--personalizer", "none,ipa", "--retriever", "deep", "--retriever-arg", "deep:depth=0", "--out", str(out)
    )
    assert code == 2 and _error_lines(err) == ["Error: retriever 'deep': argument depth=0 must be at least 1"]
    assert not out.exists()
    code, stdout, err = cli("plugins", "show", "deep")
    assert code == 0, err
    assert "retriever deep (lamp-deep 1.0)" in stdout
    assert any(line.split()[1:6] == ["depth", "│", "integer", "│", "2"] for line in stdout.splitlines()), stdout
    assert "newest | oldest" in stdout and "items looked at" in stdout


def test_plugins_show_lists_the_options_of_a_component(cli) -> None:
    code, stdout, err = cli("plugins", "show", "bm25")
    assert code == 0, err
    assert "--retriever-arg options of retriever bm25" in stdout
    for name, default in (("k1", "1.5"), ("b", "0.75"), ("epsilon", "0.25")):
        assert any(line.split()[1:5] == [name, "│", "number", "│"] and default in line for line in stdout.splitlines())
    code, stdout, _ = cli("plugins", "show", "hf")
    assert code == 0 and "num_beams" in stdout and "any other KEY=VALUE goes to from_pretrained" in stdout
    code, stdout, _ = cli("plugins", "show", "none")
    assert code == 0 and "takes no --personalizer-arg options" in stdout
    code, stdout, _ = cli("plugins", "show", "lamp-3")
    assert code == 0 and "scorer" in stdout and "max_new_tokens" in stdout
    code, stdout, _ = cli("plugins", "show", "--kind", "retriever")
    assert code == 0 and all(f"retriever {n} " in stdout for n in ("bm25", "dense", "recency", "random"))


def test_plugins_show_an_unknown_name_is_one_line_with_a_suggestion(cli) -> None:
    code, _, err = cli("plugins", "show", "bm2")
    assert code == 2
    assert _error_lines(err) == [
        "Error: no task or retriever or personalizer or generator is named 'bm2' (did you mean bm25?). "
        "`lamp plugins` lists every component."
    ]
    code, _, err = cli("plugins", "show", "bm25", "--kind", "model")
    assert code == 2 and "--kind 'model' is not one of task, retriever, personalizer, generator" in err


SHARED = (
    "--seed",
    "--device",
    "--scheme",
    "--data-dir",
    "--prompt-budget",
    "--quiet",
    "--nproc-per-node",
    "--retriever-arg",
    "--personalizer-arg",
    "--generator-arg",
)


def _commands(command, path=()):
    for name, sub in sorted((getattr(command, "commands", None) or {}).items()):
        yield from _commands(sub, (*path, name))
    if not getattr(command, "commands", None) or path == ():
        yield " ".join(path), command


def test_shared_cli_options_are_declared_once_with_one_help_and_one_range() -> None:
    """``--seed``, ``--device``... mean the same in every command that takes them: one declaration
    (lamp_harness/cli/options.py), hence one help text, one type and one range everywhere."""
    import typer

    from lamp_harness.cli import app

    seen: dict[str, dict[tuple, list[str]]] = {}
    for name, command in _commands(typer.main.get_command(app)):
        for param in command.params:
            flag = next((o for o in getattr(param, "opts", ()) if o.startswith("--")), None)
            if flag in SHARED:
                kind = getattr(param, "type", None)
                key = (param.help, getattr(kind, "min", None), getattr(kind, "max", None), param.multiple)
                seen.setdefault(flag, {}).setdefault(key, []).append(name)
    assert set(seen) == set(SHARED)
    for flag, declarations in seen.items():
        assert len(declarations) == 1, f"{flag} is declared {len(declarations)} ways: {list(declarations.values())}"
    assert sorted(next(iter(seen["--seed"].values()))) == ["evaluate", "leaderboard", "rank", "run", "train"]
    assert sorted(next(iter(seen["--generator-arg"].values()))) == ["run", "train"]
