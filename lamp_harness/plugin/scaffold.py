"""``lamp plugins new``: write a ready-to-install plugin distribution.

The distribution has a ``pyproject.toml`` advertising the plugin in the ``lamp_harness``
entry-point group, one working, model-free component per chosen kind (each a starting point to
replace with your own logic), a README, and tests that run the conformance kit
(:mod:`lamp_harness.testing`) on every component. It installs with ``pip install -e DIR`` and its
tests pass as generated.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from pathlib import Path
from string import Template

from lamp_harness.base.errors import lamp_error

SCAFFOLD_KINDS = ("task", "data-source", "retriever", "personalizer", "trainable-personalizer", "generator", "reporter")
"""What ``--kind`` accepts (``all`` selects every one)."""

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9._-]*[A-Za-z0-9]$")


MAX_NAME = 64
"""The longest distribution name ``lamp plugins new`` accepts (its files are named after it)."""


def check_name(name: str) -> str:
    """The Python package of the distribution ``name``, or a one-line error when the name cannot
    work: not a distribution name, too long, a Python keyword, or a name that is already taken in
    this environment (a standard-library module, lamp-harness itself or one of its packages, an
    installed distribution or importable module), which the new package would shadow or be
    shadowed by. Checked before anything is written."""
    import importlib.metadata
    import importlib.util
    import keyword
    import sys

    fix = "Choose another name, e.g. lamp-tfidf."
    if len(name) > MAX_NAME:
        raise lamp_error(f"the name {name[:20]!r}... is {len(name)} characters long (at most {MAX_NAME})", fix=fix)
    if not _NAME.match(name):
        raise lamp_error(f"{name!r} is not a valid distribution name", fix="Use letters, digits and '-', e.g. lamp-tfidf.")
    package = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    if keyword.iskeyword(package) or keyword.issoftkeyword(package):
        raise lamp_error(f"{name!r} would make the package {package!r}, a Python keyword", fix=fix)
    if package in sys.stdlib_module_names or package in sys.builtin_module_names:
        raise lamp_error(f"{name!r} would make the package {package!r}, a module of Python's standard library", fix=fix)
    if package == "tests":
        raise lamp_error(
            f"{name!r} would make the package 'tests', the folder of the distribution's own "
            "conformance tests (and a name many projects' test folders shadow)",
            fix=fix,
        )
    normalized = re.sub(r"[-_.]+", "-", name.lower())
    owners = importlib.metadata.packages_distributions().get(package, [])
    if normalized == "lamp-harness" or "lamp-harness" in owners or package == "lamp_harness":
        raise lamp_error(f"{name!r} is lamp-harness's own name (or one of its packages)", fix=fix)
    try:
        importlib.metadata.distribution(normalized)
        taken: str | None = f"the installed distribution {normalized!r}"
    except importlib.metadata.PackageNotFoundError:
        spec = importlib.util.find_spec(package)
        taken = (
            f"the package {package!r} of {', '.join(owners) or spec.origin or 'this environment'}"
            if spec is not None
            else None
        )
    if taken:
        raise lamp_error(f"{name!r} is already taken here: {taken}", fix=fix)
    return package


def scaffold(name: str, out: Path, kinds: Sequence[str]) -> list[Path]:
    """Write the distribution ``name`` with one component of each of ``kinds`` into ``out``
    (which must not exist or be empty); returns the files written."""
    package = check_name(name)
    chosen = _kinds(kinds)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise lamp_error("the output folder exists and is not empty", where=str(out), fix="Pass --out with a new folder.")
    short = re.sub(r"^lamp[-_.]", "", name.lower())
    short = re.sub(r"[^a-z0-9]+", "-", short).strip("-") or "plugin"
    values = {
        "name": name,
        "package": package,
        "short": short,
        "task_name": f"{short}-task",
        "source_name": f"{short}-data",
        "retriever_name": f"{short}-retriever",
        "personalizer_name": f"{short}-personalizer",
        "trainable_name": f"{short}-trainable",
        "generator_name": f"{short}-generator",
        "reporter_name": f"{short}-reporter",
    }
    files: dict[str, str] = {
        "pyproject.toml": _pyproject(values, chosen),
        "README.md": _readme(values, chosen),
        f"{package}/__init__.py": f'"""The {name} lamp-harness plugin."""\n\n__version__ = "0.1.0"\n',
        "tests/test_conformance.py": _tests(values, chosen),
    }
    if set(chosen) - {"reporter"}:
        files[f"{package}/plugin.py"] = _plugin(values, chosen)
    for kind in chosen:
        module, template = _MODULES[kind]
        files[f"{package}/{module}.py"] = Template(template).substitute(
            values, data_source=(f'"{values["source_name"]}"' if "data-source" in chosen else "None")
        )
    written = []
    for relative, text in files.items():
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def _kinds(kinds: Sequence[str]) -> list[str]:
    chosen: list[str] = []
    for raw in kinds:
        kind = raw.strip().lower().replace("_", "-")
        if kind == "all":
            chosen.extend(SCAFFOLD_KINDS)
            continue
        if kind not in SCAFFOLD_KINDS:
            close = difflib.get_close_matches(kind, SCAFFOLD_KINDS, n=1)
            hint = f"Did you mean {close[0]!r}? " if close else ""
            raise lamp_error(f"unknown --kind {raw!r}", fix=f"{hint}Choose from {', '.join(SCAFFOLD_KINDS)}, or all.")
        chosen.append(kind)
    if not chosen:
        raise lamp_error("no --kind given", fix=f"Choose from {', '.join(SCAFFOLD_KINDS)}, or all.")
    return [k for k in SCAFFOLD_KINDS if k in chosen]


def harness_requirement() -> str:
    """The compatible range of lamp-harness a plugin should depend on: this release's minor series
    (``lamp-harness>=0.1,<0.2`` for 0.1.x), as the plugin guide's Versioning section says."""
    from lamp_harness import __version__

    major, minor = (int(x) for x in __version__.split(".")[:2])
    return f"lamp-harness>={major}.{minor},<{major}.{minor + 1}"


def _pyproject(v: dict[str, str], kinds: Sequence[str]) -> str:
    deps = [f'"{harness_requirement()}"'] + (['"torch"'] if "trainable-personalizer" in kinds else [])
    points = []
    if set(kinds) - {"reporter"}:
        points.append(f'{v["short"]} = "{v["package"]}.plugin"')
    if "reporter" in kinds:
        points.append(f'{v["reporter_name"]} = "{v["package"]}.reporter"')
    return f'''[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "{v["name"]}"
version = "0.1.0"
description = "A lamp-harness plugin: {", ".join(kinds)}."
readme = "README.md"
requires-python = ">=3.10"
dependencies = [{", ".join(deps)}]

[project.optional-dependencies]
test = ["pytest>=8"]

# lamp-harness finds plugins through this entry-point group: one line per plugin module.
[project.entry-points.lamp_harness]
{chr(10).join(points)}

[tool.setuptools]
packages = ["{v["package"]}"]

[tool.pytest.ini_options]
testpaths = ["tests"]
'''


_ADD = {
    "task": ("add_task", "task_name", "task:Task", "A starter task: answer with the exact gold text (accuracy)."),
    "data-source": (
        "add_data_source",
        "source_name",
        "data:Source",
        "A starter data source: a small generated dataset for any task, no network.",
    ),
    "retriever": (
        "add_retriever",
        "retriever_name",
        "retriever:Retriever",
        "A starter retriever: shared-word overlap with the query. Args: min_len.",
    ),
    "personalizer": (
        "add_personalizer",
        "personalizer_name",
        "personalizer:Personalizer",
        "A starter personalizer: the retrieved items in the task's prompt.",
    ),
    "trainable-personalizer": (
        "add_personalizer",
        "trainable_name",
        "trainable:Trainable",
        "A starter trainable personalizer: a learned word-weighting of profile items.",
    ),
    "generator": (
        "add_generator",
        "generator_name",
        "generator:Generator",
        "A starter model-free generator: the first choice, or the prompt's last words.",
    ),
}


def _plugin(v: dict[str, str], kinds: Sequence[str]) -> str:
    lines = []
    for kind in kinds:
        if kind == "reporter":
            continue
        method, key, target, summary = _ADD[kind]
        module, cls = target.split(":")
        lines.append(f'    registry.{method}("{v[key]}", "{v["package"]}.{module}:{cls}",\n        "{summary}")')
    return f'''"""The plugin module the entry point names: it registers components, lazily.

Factories are "module:Class" strings, so a module is imported only when its component is used
(`lamp --help` and `lamp plugins` stay fast). `lamp plugins` checks that every target exists.
"""

from __future__ import annotations

from lamp_harness import hookimpl


@hookimpl
def lamp_register(registry):
    """Add this distribution's components to lamp-harness."""
{chr(10).join(lines)}
'''


def _readme(v: dict[str, str], kinds: Sequence[str]) -> str:
    rows = []
    for kind in kinds:
        module = _MODULES[kind][0]
        name = v[
            {
                "task": "task_name",
                "data-source": "source_name",
                "retriever": "retriever_name",
                "personalizer": "personalizer_name",
                "trainable-personalizer": "trainable_name",
                "generator": "generator_name",
                "reporter": "reporter_name",
            }[kind]
        ]
        rows.append(f"| {kind} | `{name}` | `{v['package']}/{module}.py` |")
    return f"""# {v["name"]}

A [lamp-harness](https://pypi.org/project/lamp-harness/) plugin, generated by
`lamp plugins new`. Every component works as generated (model-free starting points); replace
their logic with yours and keep the conformance tests passing.

| kind | name | module |
|---|---|---|
{chr(10).join(rows)}

## Develop

```bash
pip install -e .          # in this folder
pytest tests              # the lamp-harness conformance kit on every component
lamp plugins              # lists this distribution, its plugins and components
```

The plugin guide (`docs/plugins.md` in lamp-harness) documents how each kind's factory is
called, what the runner passes, the conformance kit, versioning and publishing to PyPI.

## Publish

Bump `version` in `pyproject.toml` for every change that changes results (lamp-harness records
it in each cell's `config.json` and cell id, and recomputes cells made by another version), then
`python -m build && twine upload dist/*`.
"""


def _tests(v: dict[str, str], kinds: Sequence[str]) -> str:
    p = v["package"]
    imports = ["from lamp_harness import RunContext"]
    kit = ["PluginHost"]
    body = []
    task_expr = "Task()" if "task" in kinds else 'PluginHost().registry.create("task", "lamp-7")'
    if "task" in kinds:
        imports.append(f"from {p}.task import Task")
        kit.append("check_task")
        body.append("""
def test_task_conforms():
    check_task(Task())
""")
    if "data-source" in kinds:
        imports.append(f"from {p}.data import Source")
        kit.append("check_data_source")
        body.append(f"""
def test_data_source_conforms(context):
    check_data_source(Source(context), {task_expr}, splits=("train", "dev"))
""")
    if "retriever" in kinds:
        imports.append(f"from {p}.retriever import Retriever")
        kit.append("check_retriever")
        body.append("""
def test_retriever_conforms(context):
    check_retriever(Retriever(context))
    check_retriever(Retriever(context, min_len="4"))
""")
    if "personalizer" in kinds:
        imports.append(f"from {p}.personalizer import Personalizer")
        kit.append("check_personalizer")
        body.append(f"""
def test_personalizer_conforms(context):
    check_personalizer(Personalizer(context), {task_expr})
""")
    if "trainable-personalizer" in kinds:
        imports.append(f"from {p}.trainable import Trainable")
        kit.append("check_trainable_personalizer")
        body.append(f"""
def test_trainable_personalizer_conforms(context):
    check_trainable_personalizer(Trainable(context), {task_expr})
""")
    if "generator" in kinds:
        imports.append(f"from {p}.generator import Generator")
        kit.append("check_generator")
        body.append("""
def test_generator_conforms(context):
    check_generator(Generator(context))
""")
    if "reporter" in kinds:
        imports.append(f"from {p} import reporter")
        kit.append("check_reporter")
        body.append("""
def test_reporter_conforms():
    check_reporter(reporter)
""")
    names = {
        "task": "task_name",
        "data-source": "source_name",
        "retriever": "retriever_name",
        "personalizer": "personalizer_name",
        "trainable-personalizer": "trainable_name",
        "generator": "generator_name",
    }
    registry_kinds = {
        "task": "task",
        "data-source": "data_source",
        "retriever": "retriever",
        "personalizer": "personalizer",
        "trainable-personalizer": "personalizer",
        "generator": "generator",
    }
    expected = "".join(f'\n        ("{registry_kinds[k]}", "{v[names[k]]}"),' for k in kinds if k in names)
    body.append(f'''
def test_the_installed_distribution_registers_everything():
    host = PluginHost()
    assert not [b for b in host.broken if b.distribution == "{v["name"]}"], host.broken
    for kind, name in [{expected}\n    ]:
        assert host.registry.get(kind, name).distribution == "{v["name"]}"
    assert not host.registry.check_targets()
''')
    if "reporter" in kinds:
        body.append(f'''
def test_the_installed_reporter_is_loaded():
    assert any(p.name == "{v["reporter_name"]}" and p.is_reporter for p in PluginHost().loaded)
''')
    return f'''"""Conformance tests: the lamp-harness kit on every component of this distribution.

Run them after `pip install -e .`: `pytest tests`.
"""

from __future__ import annotations

import pytest

{chr(10).join(sorted(i for i in imports if i.startswith("from lamp_harness")))}
from lamp_harness.testing import (
{"".join(f"    {k},{chr(10)}" for k in sorted(kit))})

{chr(10).join(sorted(i for i in imports if not i.startswith("from lamp_harness")))}


@pytest.fixture
def context(tmp_path):
    return RunContext(lamp_home=tmp_path)
{"".join(chr(10) + b for b in body)}'''


_TASK = '''"""The ``$task_name`` task. Replace the prompt and the metric with your task's."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from lamp_harness import Example, MetricResult, ProfileItem, TokenCounter, metrics
from lamp_harness import Task as BaseTask


class Task(BaseTask):
    """A generation task whose answer is scored by exact match (accuracy)."""

    name = "$task_name"
    official_name = "$task_name"
    kind = "generation"
    profile_fields = ("text",)
    max_new_tokens = 32
    data_source = $data_source  # the data source used when the run names none for this task

    def query(self, example: Example) -> str:
        return example.input

    def document(self, item: ProfileItem) -> str:
        return item.get("text")

    def ppep(self, item: ProfileItem, free_text: str | None = None) -> str:
        # free_text, when given, replaces "text": the field the prompt budget truncates.
        return f'"{item.get("text") if free_text is None else free_text}"'

    def prompt(self, example: Example, items: Sequence[ProfileItem], tokens: TokenCounter,
               max_tokens: int = 256) -> str:
        prompt = example.input
        for item in reversed(items):  # the best item ends up next to the input
            longer = f"{self.ppep(item)}, {prompt}"
            if tokens.count(longer) > max_tokens:
                break
            prompt = longer
        return prompt if tokens.count(prompt) <= max_tokens else tokens.truncate(prompt, max_tokens)

    def score(self, predictions: Mapping[str, str], golds: Mapping[str, str], *,
              seed: int = 0) -> list[MetricResult]:
        ids = sorted(set(predictions) & set(golds))
        return [metrics.accuracy([predictions[i].strip() for i in ids], [golds[i].strip() for i in ids],
                                 seed=seed)]
'''

_DATA = '''"""The ``$source_name`` data source: a small generated dataset, written on first use."""

from __future__ import annotations

from pathlib import Path

from lamp_harness import DataSource, SplitFiles, Task, atomic_write_json, lamp_error, split_file_names
from lamp_harness.testing import sample_examples

SIZES = {"train": 8, "dev": 4}


class Source(DataSource):
    """Questions built from the task's own profile fields and labels (replace with your data)."""

    name = "$source_name"
    schemes = ("user",)

    def locate(self, task: Task, split: str, scheme: str = "user", *, download: bool = True) -> SplitFiles:
        if split not in SIZES:
            raise lamp_error(f"data source '$source_name' has no {split!r} split",
                             fix=f"Use --split {' or '.join(SIZES)}.")
        folder = Path(self.context.lamp_home) / "$source_name" / task.name
        questions_name, outputs_name = split_file_names(split)
        questions_path, outputs_path = folder / questions_name, folder / outputs_name
        if not outputs_path.is_file():
            samples = [e for _ in range(SIZES[split]) for e in sample_examples(task)][: SIZES[split]]
            questions = [{"id": f"{split}-{i}", "input": e.input,
                          "profile": [{"id": f"{split}-{i}-{item.id}", **item.fields} for item in e.profile]}
                         for i, e in enumerate(samples)]
            golds = [{"id": f"{split}-{i}", "output": e.gold} for i, e in enumerate(samples)]
            atomic_write_json(questions_path, questions)
            atomic_write_json(outputs_path, {"task": task.official_name, "golds": golds})  # last: complete
        return SplitFiles(questions_path, outputs_path, source="$source_name:v1")
'''

_RETRIEVER = '''"""The ``$retriever_name`` retriever: rank profile items by shared words with the query."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from lamp_harness import Ranking, RankQuery, RunContext, int_arg, reject_unknown_args
from lamp_harness import Retriever as BaseRetriever

_WORD = re.compile(r"\\w+")


class Retriever(BaseRetriever):
    """Items sharing the most distinct lowercase words with the query first; ties keep profile
    order. Argument (``--retriever-arg``): ``min_len`` ignores shorter words."""

    name = "$retriever_name"

    def __init__(self, context: RunContext, **args: str) -> None:
        reject_unknown_args(args, {"min_len"}, f"retriever {self.name!r}")
        self.min_len = int_arg(args, "min_len", 1, f"retriever {self.name!r}", minimum=1)

    def _words(self, text: str) -> set[str]:
        return {w for w in _WORD.findall(text.lower()) if len(w) >= self.min_len}

    def rank(self, queries: Sequence[RankQuery]) -> list[Ranking]:
        rankings: list[Ranking] = []
        for query in queries:
            wanted = self._words(query.query)
            shared = [len(wanted & self._words(doc)) for doc in query.documents]
            rankings.append(tuple(sorted(range(len(shared)), key=lambda i: (-shared[i], i))))
        return rankings

    def cache_key(self) -> Mapping[str, Any]:
        # Everything that changes rankings; bump "version" when the scoring changes.
        return {"name": self.name, "min_len": self.min_len, "version": 1}
'''

_PERSONALIZER = '''"""The ``$personalizer_name`` personalizer: the retrieved items in the task's own prompt."""

from __future__ import annotations

from collections.abc import Sequence

from lamp_harness import Example, GenerationRequest, Generator, ProfileItem, RunContext, Task, reject_unknown_args
from lamp_harness import Personalizer as BasePersonalizer


class Personalizer(BasePersonalizer):
    """Builds the task's prompt with the retrieved items, within the generator's token budget."""

    name = "$personalizer_name"
    needs_retriever = False  # works without retrieval (then the prompt is the bare input)

    def __init__(self, context: RunContext, **args: str) -> None:
        reject_unknown_args(args, (), f"personalizer {self.name!r}")
        self.generator: Generator | None = None

    def setup(self, task: Task, generator: Generator, context: RunContext) -> None:
        self.generator = generator

    def personalize(self, task: Task, example: Example, retrieved: Sequence[ProfileItem]) -> GenerationRequest:
        assert self.generator is not None, "setup() runs first"
        prompt = task.prompt(example, retrieved, self.generator.tokens, self.generator.max_input_tokens)
        return GenerationRequest(example.id, prompt, choices=task.choices(example),
                                 max_new_tokens=task.max_new_tokens, metadata={"personalizer": self.name})
'''

_TRAINABLE = '''"""The trainable ``$trainable_name`` personalizer: learned weights pick which profile items go
into the prompt. ``lamp train`` trains it; ``lamp run`` trains it before its cell."""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from lamp_harness import Example, GenerationRequest, Generator, ProfileItem, RunContext, Task, reject_unknown_args
from lamp_harness import Personalizer as BasePersonalizer

BUCKETS = 64


class Trainable(BasePersonalizer):
    """Learns a weight per hashed word (a bag-of-words model of the gold output); profile items
    are ranked by the predicted weight of their words and the best ones fill the prompt."""

    name = "$trainable_name"
    needs_retriever = False
    trainable = True

    def __init__(self, context: RunContext, **args: str) -> None:
        reject_unknown_args(args, (), f"personalizer {self.name!r}")
        self.layer = torch.nn.Linear(BUCKETS, BUCKETS)
        torch.nn.init.zeros_(self.layer.weight)  # a deterministic start
        torch.nn.init.zeros_(self.layer.bias)
        self.generator: Generator | None = None

    def setup(self, task: Task, generator: Generator, context: RunContext) -> None:
        self.generator = generator

    @staticmethod
    def bag(text: str) -> torch.Tensor:
        vector = torch.zeros(BUCKETS)
        for word in text.lower().split():
            vector[zlib.crc32(word.encode()) % BUCKETS] = 1.0
        return vector

    def personalize(self, task: Task, example: Example, retrieved: Sequence[ProfileItem]) -> GenerationRequest:
        assert self.generator is not None, "setup() runs first"
        with torch.no_grad():
            wanted = self.layer(self.bag(task.query(example)))
        items = sorted(retrieved or example.profile,
                       key=lambda item: (-float(wanted @ self.bag(task.document(item))), item.position))[:2]
        prompt = task.prompt(example, items, self.generator.tokens, self.generator.max_input_tokens)
        return GenerationRequest(example.id, prompt, choices=task.choices(example), max_new_tokens=task.max_new_tokens)

    # -- what lamp train needs (lamp_harness.Trainable) -----------------------------------------
    def parameters(self) -> list[torch.nn.Parameter]:
        return list(self.layer.parameters())

    def training_loss(self, task: Task, examples: Sequence[Example],
                      retrieved: Sequence[Sequence[ProfileItem]]) -> torch.Tensor:
        inputs = torch.stack([self.bag(task.query(e)) for e in examples])
        targets = torch.stack([self.bag(str(e.gold)) for e in examples])
        return torch.nn.functional.binary_cross_entropy_with_logits(self.layer(inputs), targets)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {name: value.detach().cpu().clone() for name, value in self.layer.state_dict().items()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.layer.load_state_dict(dict(state))
'''

_GENERATOR = '''"""The ``$generator_name`` generator: model-free (replace ``generate`` with your model's call)."""

from __future__ import annotations

from collections.abc import Sequence

from lamp_harness import (
    DecodeMode,
    Generation,
    GenerationRequest,
    RunContext,
    batch_size_arg,
    int_arg,
    lamp_error,
    reject_unknown_args,
)
from lamp_harness import Generator as BaseGenerator


class Words:
    """Whitespace tokens (use your model's tokenizer: prompt budgets are counted with it)."""

    def count(self, text: str) -> int:
        return len(text.split())

    def truncate(self, text: str, max_tokens: int) -> str:
        return " ".join(text.split()[: max(0, max_tokens)])


class Generator(BaseGenerator):
    """Answers the first choice (label tasks) or the prompt's last words.

    Run-level settings are received only when declared: this one declares ``batch_size`` and
    ``max_input_tokens``; ``--num-beams`` is then noted as unused, never an error. Other
    ``--generator-arg`` keys arrive in ``args``."""

    name = "$generator_name"

    def __init__(self, context: RunContext, batch_size: int | str = "auto", max_input_tokens: int | str = 256,
                 **args: str) -> None:
        owner = f"generator {self.name!r}"
        reject_unknown_args(args, {"words"}, owner)
        # --batch-size is a positive integer or "auto" (here: 8); the runner predicts this many per batch
        self.batch_size = batch_size_arg(batch_size, 8, owner)
        self._max_input_tokens = int_arg({"max_input_tokens": max_input_tokens}, "max_input_tokens", 256, owner,
                                         minimum=1)
        self.words = int_arg(args, "words", 3, owner, minimum=1)
        self._tokens = Words()

    @property
    def tokens(self) -> Words:
        return self._tokens

    @property
    def max_input_tokens(self) -> int:
        return self._max_input_tokens

    def generate(self, requests: Sequence[GenerationRequest], *,
                 decode: DecodeMode = "generate") -> list[Generation]:
        if any(r.is_fusion for r in requests):
            raise lamp_error(f"generator {self.name!r} is decoder-only and cannot fuse passages",
                             fix="Use a personalizer that builds a plain prompt.")
        out = []
        for request in requests:
            if request.choices:
                text = request.choices[0]
            else:
                text = " ".join(request.prompt.split()[-self.words:])
            out.append(Generation(text, self._tokens.count(request.prompt), self._tokens.count(text)))
        return out

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "batch_size": self.batch_size, "words": self.words}
'''

_REPORTER = '''"""The ``$reporter_name`` reporter: one JSON line per finished cell in ``OUT/$short-cells.jsonl``.

A reporter is a plugin module of lifecycle hooks (see lamp_harness.plugin.hookspecs); this one needs no
registration. A reporter that raises is disabled for the rest of the run with a warning.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lamp_harness import hookimpl

FILE = "$short-cells.jsonl"


@hookimpl
def lamp_cell_finished(run: Any, cell: Any, metrics: list[Any], timing: dict[str, Any]) -> None:
    """Append the cell's metrics (cells skipped because they were finished earlier included)."""
    record = {"cell_id": cell.cell_id, "label": cell.label, "task": cell.task, "split": cell.split,
              "skipped": bool(timing.get("skipped")), "metrics": {m.name: m.value for m in metrics}}
    path = Path(run.out_dir) / FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\\n")


@hookimpl
def lamp_run_finished(run: Any, results: list[dict[str, Any]]) -> None:
    """Say where the lines went."""
    if run.console is not None:
        run.console.print(f"$reporter_name: {len(results)} cell(s) -> {Path(run.out_dir) / FILE}")
'''

_MODULES = {
    "task": ("task", _TASK),
    "data-source": ("data", _DATA),
    "retriever": ("retriever", _RETRIEVER),
    "personalizer": ("personalizer", _PERSONALIZER),
    "trainable-personalizer": ("trainable", _TRAINABLE),
    "generator": ("generator", _GENERATOR),
    "reporter": ("reporter", _REPORTER),
}
