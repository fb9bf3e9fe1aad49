"""lamp-harness: a plugin-based benchmark harness for personalized language models on LaMP.

This package's top level is the **plugin API**: everything a plugin may use, listed in
``__all__`` and versioned semantically (see docs/plugins.md, "The plugin API and its versions").
A plugin imports from here, and its tests from :mod:`lamp_harness.testing` (the conformance kit)::

    from lamp_harness import Ranking, RankQuery, Retriever, RunContext, hookimpl, int_arg

Every other module of the package is core-internal: it may change in any release.

The names are resolved on first use (module ``__getattr__``), so ``import lamp_harness`` imports
nothing: ``lamp --help`` and a plugin module that only registers stay fast, and the heavy
libraries load with the component that needs them. Type checkers read the same names from
``__init__.pyi``.
"""

from __future__ import annotations

import importlib as _importlib
from typing import Any as _Any

__version__ = "0.1.0"

# name -> the core module that defines it, dotted below the package ("plugin.contracts"). One row
# per public name; the stub (__init__.pyi) and __all__ are checked against this table by
# tests/core/test_plugin_api.py.
_EXPORTS: dict[str, str] = {
    # The four contracts, their run context and the data that flows between them.
    "Task": "plugin.contracts",
    "Retriever": "plugin.contracts",
    "Personalizer": "plugin.contracts",
    "Generator": "plugin.contracts",
    "Trainable": "plugin.contracts",
    "RunContext": "plugin.contracts",
    "Dataset": "plugin.contracts",
    "Example": "plugin.contracts",
    "ProfileItem": "plugin.contracts",
    "RankQuery": "plugin.contracts",
    "Ranking": "plugin.contracts",
    "GenerationRequest": "plugin.contracts",
    "Segment": "plugin.contracts",
    "SoftTokens": "plugin.contracts",
    "Generation": "plugin.contracts",
    "DecodeMode": "plugin.contracts",
    "Prediction": "plugin.contracts",
    "MetricResult": "plugin.contracts",
    "ExampleScores": "plugin.contracts",
    "TrainingBudget": "plugin.contracts",
    "JudgePrompt": "plugin.contracts",
    "JudgedMetric": "plugin.contracts",
    "TokenCounter": "plugin.contracts",
    "prompt_options": "plugin.contracts",
    # Training a personalizer by fine-tuning its generator.
    "GeneratorFineTuning": "plugin.trainable",
    # Data sources and the official file layout.
    "DataSource": "inputs.data",
    "SplitFiles": "inputs.data",
    "split_file_names": "inputs.data",
    "check_split_name": "inputs.data",
    "check_scheme": "inputs.data",
    # Registration: the hook marker and what lamp_register receives.
    "hookimpl": "plugin.hookspecs",
    # What the hooks receive: the run and its cells (lamp_run_started, lamp_cell_started ...), and
    # what a cell leaves on disk, typed (lamp_cell_finished's timing, lamp_run_finished's results).
    "RunInfo": "run.cells",
    "CellSpec": "run.cells",
    "CellRecord": "run.records",
    "CellResult": "run.records",
    "Timing": "run.records",
    "Registry": "plugin.registry",
    "Component": "plugin.registry",
    # Errors a user can fix, and warnings.
    "LampError": "base.errors",
    "lamp_error": "base.errors",
    "warn": "base.errors",
    # Component options (--retriever-arg key=value ...): declared once, typed, checked before any work.
    "Options": "plugin.options",
    "option": "plugin.options",
    "NoOptions": "plugin.options",
    "OptionInfo": "plugin.options",
    "reject_unknown_args": "plugin.options",
    "check_args": "plugin.options",
    "int_arg": "plugin.options",
    "float_arg": "plugin.options",
    "bool_arg": "plugin.options",
    "batch_size_arg": "plugin.options",
    "prompt_budget": "plugin.options",
    # Metrics with seeded bootstrap intervals (the module: metrics.accuracy, metrics.rouge...).
    "metrics": "inputs.metrics",
    # Token counting for prompt budgets.
    "HFTokenCounter": "base.tokens",
    "WhitespaceTokenCounter": "base.tokens",
    # Models: aliases, presets, the model cache.
    "ResolvedModel": "inputs.models",
    "resolve_model": "inputs.models",
    "pretrained_kwargs": "inputs.models",
    "loading_error": "inputs.models",
    "preset_roles": "inputs.models",
    "preset_generator_args": "inputs.models",
    "model_cache_dir": "inputs.models",
    # The shared embedding cache.
    "EmbeddingCache": "inputs.cache",
    "encoder_identity": "inputs.cache",
    # Files: atomic writes, checksums, manifests.
    "lamp_home": "base.io",
    "writing": "base.io",
    "atomic_write_bytes": "base.io",
    "atomic_write_text": "base.io",
    "atomic_write_json": "base.io",
    "staging_dir": "base.io",
    "file_sha256": "base.io",
    "file_matches": "base.io",
    "stable_hash": "base.io",
    "folder_manifest": "base.io",
    "check_manifest": "base.io",
    # Secrets: never written, never printed.
    "MASK": "base.secrets",
    "is_secret_name": "base.secrets",
    "redact": "base.secrets",
    "redact_text": "base.secrets",
    "remember": "base.secrets",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> _Any:
    """Import a public name's module on first use (the module is a submodule for ``metrics``)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lamp_harness' has no attribute {name!r}")
    loaded = _importlib.import_module(f"lamp_harness.{module}")
    value = loaded if name == module.rpartition(".")[2] else getattr(loaded, name)
    globals()[name] = value  # resolved once: later lookups do not come back here
    return value


def __dir__() -> list[str]:
    """The public names, with the module's own attributes."""
    return sorted({*globals(), *_EXPORTS})
