"""Where the real LaMP records are (LaMP-7 user dev, LaMP-1 and LaMP-2 slices in the official
layout): the folder ``LAMP_REAL_DATA`` names, else the one a development machine keeps beside the
checkout. Tests that read them skip when the folder is absent."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
REAL_DATA = Path(os.environ.get("LAMP_REAL_DATA") or REPO.parent / "shared" / "lamp-data")
