"""`lamp leaderboard --format html`: one self-contained page, checked in a real headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from lamp_cli import lamp_output as lamp
from PIL import Image

from lamp_harness.cli import main

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "leaderboard" / "demo-runs"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
# Anything a browser would fetch: a URL scheme, a protocol-relative or non-fragment src/href/url(),
# a CSS import.
EXTERNAL = re.compile(
    r"(https?:|ftp:|wss?:)//|\b(?:src|href|action|poster|data)\s*=\s*[\"']?(?!#)[^\"'\s>]|url\(\s*[\"']?(?!#)|@import",
    re.IGNORECASE,
)

needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="no chromium (apt-get install chromium; .ci/run does)")


def chromium(*args: str, timeout: int = 120) -> str:
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
        "--disable-extensions",
        "--mute-audio",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=True).stdout


# ``lamp leaderboard`` of the demo runs with every addition: baseline none, the profile-size
# breakdown, the win-rate summary against the lamp-user reference.
EVERYTHING = (
    "leaderboard", str(DEMO), "--baseline", "none", "--by", "profile-size", "--summary", "--reference", "lamp-user"
)  # fmt: skip


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """The demo leaderboard with every addition: baseline none, both breakdowns, the summary."""
    out = tmp_path_factory.mktemp("html") / "page.html"
    for args in (["--format", "json"], ["--format", "html", "--out", str(out)]):
        try:
            main([*EVERYTHING, *args])
        except SystemExit as exc:
            assert not exc.code
    return out


@pytest.mark.slow
def test_the_page_references_nothing_outside_itself(page):
    text = page.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and "<svg" in text and "<script>" in text and "<style>" in text
    assert EXTERNAL.search(text) is None, EXTERNAL.search(text).group(0)
    assert "<link" not in text and "<img" not in text and "<iframe" not in text


def test_html_needs_an_out_file(capsys):
    code, _, err = lamp(capsys, "leaderboard", str(DEMO), "--format", "html")
    assert code == 2 and "--out" in err


@pytest.mark.slow
@needs_chromium
def test_rendered_dom_holds_every_value_marker_and_configuration(page, capsys):
    code, out, _ = lamp(capsys, *EVERYTHING, "--format", "json")
    assert code == 0
    data = json.loads(out)
    dom = chromium("--dump-dom", page.as_uri())
    assert 'class="js-ready"' in dom  # the page's script ran without error
    # Every number of the table (and its interval), of every breakdown and of the summary.
    text = re.sub(r"<[^>]+>", " ", dom)
    for block in data["blocks"]:
        for row in block["rows"]:
            for value in row["values"]:
                if value is None:
                    continue
                assert f"{value['value']:.3f}" in text, value
                if value["ci_low"] is not None:
                    assert f"[{value['ci_low']:.3f}, {value['ci_high']:.3f}]" in text
        for column in block["columns"]:
            assert column["label"] in text
    significant = sum(v["significant"] is True for b in data["blocks"] for r in b["rows"] for v in r["values"] if v)
    assert significant and dom.count('<sup class="sig">†</sup>') == significant + 1  # and the legend's
    for breakdown in data["breakdowns"]:
        for row in breakdown["rows"]:
            for bucket in row["buckets"]:
                assert bucket["label"] in text
                assert all(f"{v['value']:.3f}" in text for v in bucket["values"] if v)
    for rate in data["summaries"][0]["rates"]:
        assert f"{rate['win_rate']:.3f}" in text
    # Each column's configuration: model, data checksums, versions.
    assert "smollm2-135m-instruct" in text and "dev_outputs.json: " in text and "lamp-harness=" in text


@pytest.mark.slow
@needs_chromium
def test_screenshot_is_not_blank(page, tmp_path):
    shot = tmp_path / "shot.png"
    chromium(f"--screenshot={shot}", "--window-size=1280,900", page.as_uri())
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert pixels.shape == (900, 1280)
    assert pixels.std() > 10  # text, borders, highlighted baseline column
    assert (pixels < 128).mean() > 0.01  # a real amount of dark ink, not a blank or error page
