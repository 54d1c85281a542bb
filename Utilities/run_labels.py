"""How a person labels a run: its experiment, tags, description and notes. One rule for
every place that takes them (``run_training.py --experiment/--tag/--description``, the
config file's ``run:`` section, the Train form, the run page's edit form and
``PATCH /api/training-runs/<id>``), so each refuses the same values with the same message,
naming its field.

- ``experiment``: a name that groups runs (``lr-sweep``); empty means none.
- ``tags``: short names (``baseline``); no commas, since the forms type them as a
  comma-separated list; sorted and distinct, as the store keeps them.
- ``description`` (what the run is for, set when it starts) and ``notes`` (what was
  learnt, written later): free text, line breaks allowed.

No control characters anywhere (free text keeps tabs and line breaks): PostgreSQL refuses
a NUL byte outright, and nobody means one. The store checks types again; the limits are
here, so a form can never write a megabyte into a list's cell.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from Utilities.input_errors import InputError, raise_collected

MAX_EXPERIMENT = 100
MAX_TAG = 50
MAX_TAGS = 20
MAX_DESCRIPTION = 2_000
MAX_NOTES = 20_000
FIELDS = ("experiment", "tags", "description", "notes")
# The config file's section (how the run is recorded, not the model: taken out of the
# config before the trainer sees it, as training_dashboard is).
SECTION = "run"
SECTION_KEYS = ("experiment", "tags", "description")

_NAME_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_TEXT_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def check_experiment(value: Any, field: str = "experiment") -> str:
    """An experiment name, stripped ("" for none); InputError naming ``field``."""
    return _name(value, field, "experiment", MAX_EXPERIMENT)


def check_tag(value: Any, field: str = "tags") -> str:
    """One tag, stripped and non-empty; InputError naming ``field``."""
    tag = _name(value, field, "a tag", MAX_TAG)
    if not tag:
        raise InputError("a tag must not be empty", field)
    if "," in tag:
        raise InputError(f"a tag must not contain a comma (tags are separated by commas); "
                         f"got {tag!r}", field)
    return tag


def check_tags(values: Any, field: str = "tags") -> list[str]:
    """A list of tags, checked, distinct and sorted; InputError naming ``field``."""
    if isinstance(values, str) or not isinstance(values, list | tuple):
        raise InputError(f"tags must be a list of strings; got {type(values).__name__}",
                         field)
    tags = sorted({check_tag(value, field) for value in values})
    if len(tags) > MAX_TAGS:
        raise InputError(f"a run has at most {MAX_TAGS} tags; got {len(tags)}", field)
    return tags


def parse_tags(text: str, field: str = "tags") -> list[str]:
    """Tags typed as ``a, b, c`` (blank items are skipped), checked."""
    if not isinstance(text, str):
        raise InputError(f"tags must be text; got {type(text).__name__}", field)
    return check_tags([item for item in (part.strip() for part in text.split(",")) if item],
                      field)


def check_text(value: Any, field: str, limit: int) -> str:
    """Free text (description, notes): a string of at most ``limit`` characters, line
    breaks and tabs allowed; trailing blanks are trimmed."""
    if not isinstance(value, str):
        raise InputError(f"{field} must be a string; got {type(value).__name__}", field)
    text = value.rstrip()
    if found := _TEXT_CONTROL.search(text):
        raise InputError(f"{field} must not contain the control character {found[0]!r}",
                         field)
    if len(text) > limit:
        raise InputError(f"{field} is {len(text):,} characters long; at most {limit:,}",
                         field)
    return text


_CHECKS = {
    "experiment": check_experiment,
    "tags": check_tags,
    "description": lambda value, field="description": check_text(value, field,
                                                                  MAX_DESCRIPTION),
    "notes": lambda value, field="notes": check_text(value, field, MAX_NOTES),
}


def check_labels(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Every given label checked, every problem at once (InputErrors, each under
    ``prefix + field``); an unknown field is refused by name."""
    checked: dict[str, Any] = {}
    errors: dict[str | None, str] = {}
    for name, value in values.items():
        field = f"{prefix}{name}"
        if name not in _CHECKS:
            errors[field] = (f"unknown field {name!r}; a run's labels are "
                             f"{', '.join(FIELDS)}")
            continue
        try:
            checked[name] = _CHECKS[name](value, field)
        except InputError as exc:
            errors[field] = str(exc)
    raise_collected(errors)
    return checked


def config_section(section: Any) -> dict[str, Any]:
    """The config file's ``run:`` section (None: empty), checked: experiment, tags (a
    list, or one comma-separated string) and description, fields named ``run.<key>``."""
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise InputError(f"{SECTION} must be a mapping of {', '.join(SECTION_KEYS)}", SECTION)
    unknown = sorted(str(key) for key in section if key not in SECTION_KEYS)
    if unknown:
        raise InputError(f"unknown key(s) {', '.join(unknown)} in {SECTION}; it takes "
                         f"{', '.join(SECTION_KEYS)}", f"{SECTION}.{unknown[0]}")
    values = dict(section)
    if isinstance(values.get("tags"), str):
        values["tags"] = parse_tags(values["tags"], f"{SECTION}.tags")
    return check_labels(values, prefix=f"{SECTION}.")


def _name(value: Any, field: str, what: str, limit: int) -> str:
    """A one-line name (experiment, tag), stripped."""
    if not isinstance(value, str):
        raise InputError(f"{what} must be a string; got {type(value).__name__}", field)
    name = value.strip()
    if found := _NAME_CONTROL.search(name):
        raise InputError(f"{what} must not contain the control character {found[0]!r}", field)
    if len(name) > limit:
        raise InputError(f"{what} is longer than {limit} characters ({len(name):,})", field)
    return name


def merged_tags(*groups: Iterable[str]) -> list[str]:
    """Every tag of the groups, distinct and sorted."""
    return sorted({tag for group in groups for tag in group})
