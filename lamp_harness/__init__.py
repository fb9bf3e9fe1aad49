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

# name -> the core module that defines it. One row per public name; the stub (__init__.pyi) and
# __all__ are checked against this table by tests/test_plugin_api.py.
_EXPORTS: dict[str, str] = {
    # The four contracts, their run context and the data that flows between them.
    "Task": "contracts",
    "Retriever": "contracts",
    "Personalizer": "contracts",
    "Generator": "contracts",
    "Trainable": "contracts",
    "RunContext": "contracts",
    "Dataset": "contracts",
    "Example": "contracts",
    "ProfileItem": "contracts",
    "RankQuery": "contracts",
    "Ranking": "contracts",
    "GenerationRequest": "contracts",
    "Segment": "contracts",
    "SoftTokens": "contracts",
    "Generation": "contracts",
    "DecodeMode": "contracts",
    "Prediction": "contracts",
    "MetricResult": "contracts",
    "ExampleScores": "contracts",
    "JudgePrompt": "contracts",
    "JudgedMetric": "contracts",
    "TokenCounter": "contracts",
    "prompt_options": "contracts",
    # Training a personalizer by fine-tuning its generator.
    "GeneratorFineTuning": "trainable",
    # Data sources and the official file layout.
    "DataSource": "data",
    "SplitFiles": "data",
    "split_file_names": "data",
    "check_split_name": "data",
    "check_scheme": "data",
    # Registration: the hook marker and what lamp_register receives.
    "hookimpl": "hookspecs",
    # What the hooks receive: the run and its cells (lamp_run_started, lamp_cell_started ...), and
    # what a cell leaves on disk, typed (lamp_cell_finished's timing, lamp_run_finished's results).
    "RunInfo": "cells",
    "CellSpec": "cells",
    "CellRecord": "records",
    "CellResult": "records",
    "Timing": "records",
    "Registry": "registry",
    "Component": "registry",
    # Errors a user can fix, and warnings.
    "LampError": "errors",
    "lamp_error": "errors",
    "warn": "errors",
    # Component options (--retriever-arg key=value ...): declared once, typed, checked before any work.
    "Options": "options",
    "option": "options",
    "NoOptions": "options",
    "OptionInfo": "options",
    "reject_unknown_args": "options",
    "check_args": "options",
    "int_arg": "options",
    "float_arg": "options",
    "bool_arg": "options",
    "batch_size_arg": "options",
    "prompt_budget": "options",
    # Metrics with seeded bootstrap intervals (the module: metrics.accuracy, metrics.rouge...).
    "metrics": "metrics",
    # Token counting for prompt budgets.
    "HFTokenCounter": "tokens",
    "WhitespaceTokenCounter": "tokens",
    # Models: aliases, presets, the model cache.
    "ResolvedModel": "models",
    "resolve_model": "models",
    "pretrained_kwargs": "models",
    "loading_error": "models",
    "preset_roles": "models",
    "preset_generator_args": "models",
    "model_cache_dir": "models",
    # The shared embedding cache.
    "EmbeddingCache": "cache",
    "encoder_identity": "cache",
    # Files: atomic writes, checksums, manifests.
    "lamp_home": "io",
    "writing": "io",
    "atomic_write_bytes": "io",
    "atomic_write_text": "io",
    "atomic_write_json": "io",
    "file_sha256": "io",
    "file_matches": "io",
    "stable_hash": "io",
    "folder_manifest": "io",
    "check_manifest": "io",
    # Secrets: never written, never printed.
    "MASK": "secrets",
    "is_secret_name": "secrets",
    "redact": "secrets",
    "redact_text": "secrets",
    "remember": "secrets",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> _Any:
    """Import a public name's module on first use (the module is a submodule for ``metrics``)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lamp_harness' has no attribute {name!r}")
    loaded = _importlib.import_module(f"lamp_harness.{module}")
    value = loaded if name == module else getattr(loaded, name)
    globals()[name] = value  # resolved once: later lookups do not come back here
    return value


def __dir__() -> list[str]:
    """The public names, with the module's own attributes."""
    return sorted({*globals(), *_EXPORTS})
