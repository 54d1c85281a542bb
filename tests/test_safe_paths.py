"""The one folder rule (resolved paths stay inside their folder) and how paths are shown."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from Utilities.safe_paths import OutsideFolder, inside, is_inside, shown


def test_a_plain_file_is_inside(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("x")
    assert inside(tmp_path, "a.csv") == (tmp_path / "a.csv").resolve()
    assert is_inside(tmp_path, tmp_path / "a.csv")


@pytest.mark.parametrize("name", ["../a.csv", "..", ".", "/etc/passwd", "sub/../../a.csv"])
def test_escapes_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(OutsideFolder, match="outside its folder"):
        inside(tmp_path / "root", name)


def test_a_symlink_leading_out_is_refused_and_the_message_shows_no_target(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    os.symlink("/etc/passwd", root / "x.csv")
    with pytest.raises(OutsideFolder) as caught:
        inside(root, "x.csv")
    assert "passwd" not in str(caught.value) and str(tmp_path) not in str(caught.value)
    assert not is_inside(root, root / "x.csv")


def test_a_symlink_within_the_folder_is_fine(tmp_path: Path) -> None:
    (tmp_path / "real.csv").write_text("x")
    os.symlink(tmp_path / "real.csv", tmp_path / "alias.csv")
    assert inside(tmp_path, "alias.csv") == (tmp_path / "real.csv").resolve()


def test_shown_is_relative_to_the_root_that_holds_it(tmp_path: Path) -> None:
    models = tmp_path / "Models"
    assert shown(models / "PPO_x" / "x_config.yaml", [tmp_path / "data", models]) == \
        "Models/PPO_x/x_config.yaml"
    assert shown(Path("/somewhere/else/secret.csv"), [models]) == "secret.csv"
    assert not shown(tmp_path / "Models", [models]).startswith("/")
