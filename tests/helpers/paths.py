"""The repository's folders and the data files tests read."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_CSV = ROOT / "sample.csv"
# The users' file format; it lives in ../shared/data and is not copied (licence unknown).
NQ_CSV = ROOT.parent / "shared" / "data" / "galaxy_nq_1min.csv"
