"""One rule for every folder a user or a request can name a file in (the model library,
the data folder, its uploads): the *resolved* path must lie inside the *resolved*
folder. Symlinks are followed before the check, so ``x.csv -> /etc/passwd`` or a model
folder linked to elsewhere is outside, wherever it is found (listing, predict, backtest).

And one rule for showing paths to people and clients: relative to the folder they live
in, never absolute (error replies and JSON must not reveal the server's layout).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


class OutsideFolder(ValueError):
    """A path that resolves outside the folder it must stay in."""


def is_inside(folder: Path | str, path: Path | str) -> bool:
    """Whether ``path`` (symlinks followed) lies inside ``folder`` (symlinks followed)."""
    root = Path(folder).resolve()
    target = Path(path).resolve()
    return target != root and root in target.parents


def inside(folder: Path | str, relative: Path | str, what: str = "file") -> Path:
    """``folder/relative`` resolved; OutsideFolder (naming ``relative`` only, never the
    target's content or the server's absolute path) when it resolves elsewhere."""
    root = Path(folder).resolve()
    target = (root / relative).resolve()
    if target == root or root not in target.parents:
        raise OutsideFolder(f"{what} {str(relative)!r} is outside its folder "
                            "(a symlink or '..' that leads elsewhere is refused)")
    return target


def shown(path: Path | str, roots: Iterable[Path | str] = ()) -> str:
    """``path`` as a person may see it: under the name of the first of ``roots`` that
    holds it (``Models/PPO_x``), else relative to the current folder, else its name."""
    target = Path(path)
    for root, label in [*((Path(r), Path(r).resolve().name) for r in roots), (Path.cwd(), "")]:
        for base, candidate in ((root, target), (root.resolve(), target.resolve())):
            try:
                relative = candidate.relative_to(base).as_posix()
            except ValueError:
                continue
            return "/".join(part for part in (label, relative) if part and part != ".") or "."
    return target.name
