"""Stand-ins for the training child the dashboard starts (tests only)."""

from __future__ import annotations

from pathlib import Path

from web import training_jobs


def slow_child(tmp_path: Path, monkeypatch) -> Path:
    """An entry point that waits until its gate file exists (a training in flight)."""
    gate = tmp_path / "gate"
    script = tmp_path / "slow.py"
    script.write_text("import pathlib, time\n"
                      f"while not pathlib.Path({str(gate)!r}).exists():\n"
                      "    time.sleep(0.05)\n")
    monkeypatch.setattr(training_jobs, "ENTRY_POINT", script)
    return gate
