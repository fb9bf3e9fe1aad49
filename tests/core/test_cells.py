"""The cell module: the plan (product, capability rules, impossible cells), the one assembly the
runner and the trainer share, and the matrix built from a matrix file and the command line, all
against the real registry (the built-in plugins and the model-free toy generators)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import lamp_harness
from lamp_harness.base.errors import LampError
from lamp_harness.plugin.contracts import Example, ProfileItem, RunContext
from lamp_harness.plugin.registry import reset_host
from lamp_harness.run import cells
from lamp_harness.run.cells import Choice, Draft, Matrix

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def registry(toys):
    from lamp_harness.plugin.registry import host

    reset_host(None)
    yield host().registry
    reset_host(None)


def _generators(registry, context):
    built = {}

    def generator(key):
        if key not in built:
            built[key] = registry.create("generator", key[0], context)
        return built[key]

    return generator


def _label(draft: Draft) -> str:
    return " / ".join(x for x in (draft.personalizer, draft.retriever, draft.generator) if x)


# -- the capability rules -------------------------------------------------------------------------


def test_each_personalizer_gets_the_retriever_its_flags_allow(registry) -> None:
    def choose(name: str, retriever: str | None, k: int = 2, args: dict | None = None):
        cls = registry.get("personalizer", name).load()
        return cells.retriever_choice(cls, retriever, k, lambda _: args or {})

    assert choose("none", "bm25") == (None, {}, 0)  # accepts no retriever: dropped
    assert choose("ipa", "bm25", args={"k1": "1.2"}) == ("bm25", {"k1": "1.2"}, 2)
    assert choose("pplug", "contriever") == ("contriever", {}, 0)  # borrows the encoder: no items
    assert choose("pplug", None) == (None, {}, 0)  # its own encoder
    # The default retriever, its default arguments under the user's.
    assert choose("pplug+retrieval", None, 1) == ("dense", {"model": "bge"}, 1)
    assert choose("pplug+retrieval", None, 1, {"model": "contriever"}) == ("dense", {"model": "contriever"}, 1)
    with pytest.raises(cells.NeedsRetriever):
        choose("ipa", None)


def test_the_trainer_resolves_a_retriever_as_the_plan_does(registry) -> None:
    from lamp_harness.train.training import TrainConfig, resolve_retriever

    pcls = registry.get("personalizer", "pplug+retrieval").load()
    resolved = resolve_retriever(TrainConfig(task="lamp-7", personalizer="pplug+retrieval"), pcls)
    (draft,), _ = cells.expand(Matrix(tasks=("lamp-7",), personalizers=("pplug+retrieval",)), registry)
    assert (resolved.retriever, dict(resolved.retriever_args), resolved.k) == (
        draft.retriever,
        dict(draft.retriever_args),
        draft.k,
    )
    with pytest.raises(LampError, match="personalizer 'ipa' needs a retriever"):
        resolve_retriever(TrainConfig(task="lamp-7", personalizer="ipa"), registry.get("personalizer", "ipa").load())


# -- the plan ---------------------------------------------------------------------------------------


def test_expand_takes_each_groups_product_in_order_without_duplicates(registry) -> None:
    matrix = Matrix(
        tasks=("lamp-7",),
        groups=(
            Matrix(tasks=("lamp-7",), personalizers=("none", "ipa"), retrievers=("bm25",), ks=(1, 2)),
            Matrix(tasks=("LaMP-7",), personalizers=("none", "pplug"), retrievers=("contriever",), ks=(1, 2)),
        ),
        generators=("toy-echo",),
    )
    drafts, problems = cells.expand(matrix, registry)
    assert problems == []
    assert [(d.personalizer, d.retriever, d.k) for d in drafts] == [
        ("none", None, 0),  # once: none drops the retriever and k
        ("ipa", "bm25", 1),
        ("ipa", "bm25", 2),
        ("pplug", "contriever", 0),  # once: the encoder plays no part of k
    ]
    assert {d.generator_key for d in drafts} == {("hf", None)}  # groups set their own generators


def test_a_method_that_needs_a_retriever_is_one_problem_naming_some(registry) -> None:
    drafts, problems = cells.expand(Matrix(tasks=("lamp-7", "lamp-3"), personalizers=("none", "ipa")), registry)
    assert [d.personalizer for d in drafts] == ["none", "none"]
    assert problems == ["ipa needs a retriever (add --retriever, e.g. bm25, contriever, dense, random)"] * 2
    with pytest.raises(LampError, match=r"^1 impossible cell\(s\), nothing was run: ipa needs a retriever"):
        cells.check_drafts(drafts, problems, registry, RunContext(Path(".")), generator=None, label=_label)


def test_an_encoder_method_beside_item_methods_keeps_its_own_encoder(registry, lamp_home, capsys) -> None:
    context = RunContext(lamp_home)
    matrix = Matrix(tasks=("lamp-7",), personalizers=("ipa", "pplug"), retrievers=("bm25",), generators=("toy-echo",))
    drafts, problems = cells.expand(matrix, registry)
    checked = cells.check_drafts(drafts, problems, registry, context, generator=_generators(registry, context), label=_label)
    assert [(d.personalizer, d.retriever) for d in checked] == [("ipa", "bm25"), ("pplug", None)]
    assert "pplug uses a retriever's encoder and 'bm25' has none" in capsys.readouterr().err

    alone = Matrix(tasks=("lamp-7",), personalizers=("pplug",), retrievers=("bm25",), generators=("toy-echo",))
    with pytest.raises(LampError) as refused:
        cells.check_drafts(*cells.expand(alone, registry), registry, context, generator=None, label=_label)
    assert str(refused.value) == (
        "1 impossible cell(s), nothing was run: pplug / bm25 / toy-echo: 'pplug' uses a retriever's text "
        "encoder as its own, and 'bm25' has none (use a dense retriever such as contriever, or --personalizer "
        "pplug+retrieval to put its top items in the prompt). Fix the selection."
    )


def test_an_encoder_decoder_method_is_refused_with_a_decoder_only_generator(registry, lamp_home) -> None:
    context = RunContext(lamp_home)
    generator = _generators(registry, context)
    matrix = Matrix(tasks=("lamp-7",), personalizers=("fid",), retrievers=("bm25",), generators=("toy-encdec",))
    assert (
        len(cells.check_drafts(*cells.expand(matrix, registry), registry, context, generator=generator, label=_label)) == 1
    )
    with pytest.raises(LampError, match="'fid' needs an encoder-decoder model and 'toy' is decoder-only.*flan-t5-base"):
        cells.check_drafts(
            *cells.expand(
                Matrix(tasks=("lamp-7",), personalizers=("fid",), retrievers=("bm25",), generators=("toy-echo",)), registry
            ),
            registry,
            context,
            generator=generator,
            label=_label,
        )


# -- a cell's identity -------------------------------------------------------------------------------


def test_the_label_names_every_setting_that_makes_a_method_of_its_own(registry, tmp_path) -> None:
    def label(draft: Draft, matrix: Matrix = Matrix(tasks=("lamp-7",)), budget=(128, "task")) -> str:
        return cells.label(draft, matrix, registry, model="m", settings=["beams=4"], budget=budget)

    ipa = Draft("lamp-7", "ipa", "bm25", 2, "hf", None, personalizer_args=(("a", "1"),))
    assert label(ipa) == "ipa[a=1] / bm25 / k=2 / m / beams=4"
    assert label(Draft("lamp-7", "pplug", "contriever", 0, "hf", None)) == "pplug / encoder=contriever / m / beams=4"
    tuned = Matrix(tasks=("lamp-7",), checkpoint=tmp_path, prompt_budget="strict")
    assert label(ipa, tuned, (9, "generator_args")) == (
        "ipa[a=1] (fine-tuned) / bm25 / k=2 / m / beams=4 / max-new-tokens=9 / prompt-budget=strict"
    )
    assert "(fine-tuned)" not in label(Draft("lamp-7", "pplug", None, 0, "hf", None), tuned)  # trains itself


def test_the_cell_id_hashes_what_changes_predictions_and_the_versions(registry, tmp_path) -> None:
    def spec(draft: Draft, matrix: Matrix, versions=(("lamp-harness", "1"),)):
        return cells.spec(
            draft, matrix, registry, tmp_path, label="x", fingerprint="f", decode="generate", budget=(5, "task"),
            judges=(), versions=versions,
        )  # fmt: skip

    matrix = Matrix(tasks=("lamp-7",))
    none = spec(Draft("lamp-7", "none", None, 0, "hf", None), matrix)
    assert none.cell_id.startswith("lamp-7_none-") and none.dir == tmp_path / none.cell_id
    upgraded = spec(Draft("lamp-7", "none", None, 0, "hf", None), matrix, (("lamp-harness", "2"),))
    assert upgraded.base_id == none.base_id and upgraded.cell_id != none.cell_id
    plus = spec(Draft("lamp-7", "pplug+retrieval", "dense", 1, "hf", None), matrix)
    assert plus.cell_id.startswith("lamp-7_pplugplusretrieval_dense_k1-")
    trained = Matrix(tasks=("lamp-7",), train_args={"max_steps": "2"}, task_args={"LaMP-7": {"max_new_tokens": "3"}})
    assert spec(Draft("lamp-7", "none", None, 0, "hf", None), trained).cell_id != none.cell_id  # the task option
    assert spec(Draft("lamp-7", "none", None, 0, "hf", None), trained).task_args == (("max_new_tokens", "3"),)
    untrained = Matrix(tasks=("lamp-7",), train_args={"max_steps": "2"})
    assert spec(Draft("lamp-7", "none", None, 0, "hf", None), untrained).cell_id == none.cell_id  # none trains nothing
    pplug = Draft("lamp-7", "pplug", None, 0, "hf", None)
    assert spec(pplug, untrained).cell_id != spec(pplug, matrix).cell_id


def test_task_options_and_sources_must_name_a_task_of_the_run(registry) -> None:
    drafts, _ = cells.expand(Matrix(tasks=("lamp-7",)), registry)
    with pytest.raises(LampError, match=r"--data lamp-3=demo names a task this run does not include \(its tasks: lamp-7\)"):
        cells.check_task_data(Matrix(tasks=("lamp-7",), task_data={"lamp-3": "demo"}), drafts, registry)
    with pytest.raises(LampError, match="--data gives task 'lamp-7' two sources"):
        cells.check_task_data(Matrix(tasks=("lamp-7",), task_data={"lamp-7": "demo", "LaMP-7": "lamp"}), drafts, registry)
    two = Matrix(tasks=("lamp-7",), task_args={"lamp-7": {"max_new_tokens": "3"}, "LAMP-7": {"max_new_tokens": "4"}})
    with pytest.raises(LampError, match="--task-arg gives task 'lamp-7' two values of max_new_tokens"):
        cells.check_task_args(two, drafts, registry)
    both = Matrix(tasks=("lamp-7",), task_args={"*": {"a": "1", "b": "1"}, "LaMP-7": {"b": "2"}})
    assert both.task_args_of("lamp-7", registry) == (("a", "1"), ("b", "2"))
    assert both.task_args_of("lamp-3", registry) == (("a", "1"), ("b", "1"))


# -- the assembly -----------------------------------------------------------------------------------


def test_assemble_builds_the_task_and_sets_the_personalizer_up(registry, lamp_home) -> None:
    context = RunContext(lamp_home)
    generator = registry.create("generator", "toy-echo", context)
    built = cells.assemble(Choice("lamp-7", "ipa", retriever="bm25"), context, registry, generator=generator)
    assert built.task.name == "lamp-7" and built.generator is generator and built.personalizer.name == "ipa"
    example = Example("q1", 'Paraphrase the tweet: "sunny day"', (ProfileItem("p1", 0, {"text": "rainy day"}),))
    request = built.personalizer.personalize(built.task, example, example.profile)  # setup ran
    assert "rainy day" in request.prompt and "sunny day" in request.prompt
    with pytest.raises(LampError, match="task 'lamp-7'.*nope"):
        cells.assemble(Choice("lamp-7", "ipa", task_args={"nope": "1"}), context, registry, generator=generator)


def test_assemble_refuses_a_borrowed_encoder_that_does_not_exist_in_one_line(registry, lamp_home) -> None:
    context = RunContext(lamp_home)
    generator = registry.create("generator", "toy-echo", context)
    with pytest.raises(LampError) as refused:
        cells.assemble(
            Choice("lamp-7", "pplug", retriever="recency"), context, registry, generator=generator, where="lamp train"
        )
    assert str(refused.value) == (
        "lamp train: 'pplug' uses a retriever's text encoder as its own, and 'recency' has none. Use a dense "
        "retriever such as contriever, or --personalizer pplug+retrieval to put its top items in the prompt."
    )


def test_neither_the_runner_nor_the_trainer_reads_a_capability_flag() -> None:
    flags = {
        "accepts_retriever",
        "retriever_use",
        "default_retriever",
        "default_retriever_args",
        "needs_retriever",
        "items_variant",
        "requires_encoder_decoder",
    }
    package = Path(lamp_harness.__file__).parent
    for module in ("run/runner", "train/training"):
        tree = ast.parse((package / f"{module}.py").read_text(encoding="utf-8"))
        read = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        read |= {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
        assert not flags & read, f"{module}.py reads {sorted(flags & read)}: use lamp_harness.run.cells"


def test_the_cell_module_imports_nothing_that_imports_the_hook_specs() -> None:
    """The hook specs type their arguments with CellSpec and RunInfo: whatever cells imports (at
    any depth, lazily or for typing) must not lead back to them."""
    package = Path(lamp_harness.__file__).parent

    def imports(module: str) -> set[str]:
        """The core modules ``module`` (a path below the package: ``run/cells``) imports."""
        tree = ast.parse((package / f"{module}.py").read_text(encoding="utf-8"))
        found = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lamp_harness."):
                found.add(node.module.removeprefix("lamp_harness.").replace(".", "/"))
        return found

    seen, todo = set(), ["run/cells"]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo += sorted(imports(module))
    assert "run/cells" in imports("plugin/hookspecs")
    assert not {"plugin/hookspecs", "plugin/registry", "run/runner", "train/training"} & seen, sorted(seen)


# -- the matrix from a matrix file and the command line ----------------------------------------


def test_from_config_reads_the_groups_and_the_command_line_wins(registry) -> None:
    demo = ROOT / "examples" / "demo.toml"
    matrix = Matrix.from_config(demo, registry)
    assert matrix.data == "demo" and matrix.limit == 10 and matrix.decode == "labels"
    assert matrix.generator_args["num_beams"] == "1" and matrix.train_args["max_steps"] == "6"
    assert [g.personalizers for g in matrix.groups][:2] == [("none", "pplug"), ("ipa",)]
    over = Matrix.from_config(demo, registry, limit=2, seed=7, num_beams=4, task_arg=["lamp-7:max_new_tokens=5"])
    assert (over.limit, over.seed, over.generator_args["num_beams"]) == (2, 7, "4")
    assert over.task_args == {"lamp-7": {"max_new_tokens": "5"}}


def test_from_cli_normalizes_and_checks_each_value(registry, tmp_path) -> None:
    matrix = Matrix.from_cli(
        registry, task="lamp-7", personalizer="none,pag", k="1,2", split="validation", scheme="temporal",
        summarizer="toy-echo", data="demo,lamp-3=lamp", reporter=["a,b", "a"],
    )  # fmt: skip
    assert (matrix.split, matrix.scheme, matrix.ks, matrix.data, dict(matrix.task_data)) == (
        "dev",
        "time",
        (1, 2),
        "demo",
        {"lamp-3": "lamp"},
    )
    assert matrix.personalizer_args == {"pag": {"summarizer": "toy-echo"}} and matrix.reporters == ("a", "b")
    with pytest.raises(LampError, match="--summarizer applies to no personalizer"):
        Matrix.from_cli(registry, task="lamp-7", summarizer="toy-echo")
    with pytest.raises(LampError, match="^lamp run: no task given"):
        Matrix.from_cli(registry)
    bad = tmp_path / "m.toml"
    bad.write_text('task = "lamp-7"\n[[group]]\nseed = 3\n', encoding="utf-8")
    with pytest.raises(LampError, match=r"m\.toml: \[\[group\]\] 1 has key\(s\) seed that a group cannot set"):
        Matrix.from_config(bad, registry)
    checked = []
    Matrix.from_cli(registry, task="lamp-7", checkpoint=tmp_path, check_checkpoint=checked.append)
    assert checked == [tmp_path]
