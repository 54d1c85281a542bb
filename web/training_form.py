"""The training form of each model type: its fields come from the type's defaults (the
same dict the CLI merges over), its help text from the type's commented example config
(``NetworkConfigs/example_<type>_config.yaml``), so the form, the CLI and the docs can
never disagree. Only the values a user changed are passed on, so ``--mode smoke`` still
applies its preset to everything left at the default.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from NetworkConfigs import get_model_type, model_type_names
from Utilities.accounting import COSTS, cost_errors

EXAMPLES = Path(__file__).resolve().parent.parent / "NetworkConfigs"
_COMMENTED_KEY = re.compile(r"^  (\w+):[^#]*#\s*(.+)$")


@dataclass(frozen=True)
class Field:
    section: str
    key: str
    default: Any
    help: str

    @property
    def name(self) -> str:
        return f"{self.section}.{self.key}"

    @property
    def kind(self) -> str:
        """How the page renders it: bool, int, float, list or text."""
        if isinstance(self.default, bool):
            return "bool"
        if isinstance(self.default, int):
            return "int"
        if isinstance(self.default, float):
            return "float"
        return "list" if self.key == "features" else "text"

    def shown(self, value: Any) -> str:
        """A value as the input shows it (None is an empty box)."""
        if value is None:
            return ""
        if isinstance(value, list):
            return ", ".join(map(str, value))
        return str(value).lower() if isinstance(value, bool) else str(value)


@cache
def help_texts(type_name: str) -> dict[str, str]:
    """``{key: comment}`` from the type's example config (empty if it has none)."""
    path = EXAMPLES / f"example_{type_name}_config.yaml"
    if not path.is_file():
        return {}
    found = {}
    for line in path.read_text().splitlines():
        match = _COMMENTED_KEY.match(line)
        if match:
            found.setdefault(match.group(1), match.group(2).strip())
    return found


@cache
def fields_of(type_name: str) -> tuple[Field, ...]:
    """Every parameter of a type, section by section, with its default and help."""
    defaults = get_model_type(type_name).trainer_class()(None).config
    help_for = help_texts(type_name)
    return tuple(Field(section, key, default, help_for.get(key, ""))
                 for section, keys in defaults.items() if isinstance(keys, dict)
                 for key, default in keys.items())


def form_types() -> list[str]:
    return model_type_names()


class FieldError(ValueError):
    """A form value that cannot be read; ``field`` is the input's name."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def parse_value(field: Field, text: str) -> Any:
    """The typed value of one input; empty means null where the default is null."""
    text = (text or "").strip()
    if text == "" and field.kind != "bool":  # null; the trainer says if it needs a value
        return None
    kind = field.kind
    try:
        if kind == "bool":
            if text.lower() not in ("true", "false"):
                raise ValueError
            return text.lower() == "true"
        if kind == "int":
            return int(_plain_number(text, _INT))
        if kind == "float":
            return float(_plain_number(text, _FLOAT))
        if kind == "list":
            items = [item.strip() for item in text.split(",") if item.strip()]
            return items or None
        if field.default is None:  # a number where the default is null (input_dim, …)
            return _number_or_text(text)
        return text
    except ValueError:
        raise FieldError(field.name, f"{field.key} must be {_expected(kind)}; got {text!r}") \
            from None


# Python's int()/float() also read '1_000', '１２' and 'nan'; a form takes plain numbers.
_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


def _plain_number(text: str, pattern: re.Pattern[str]) -> str:
    if not pattern.fullmatch(text):
        raise ValueError(text)
    return text


def _number_or_text(text: str) -> Any:
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            continue
    return text


def _expected(kind: str) -> str:
    return {"bool": "true or false", "int": "a whole number", "float": "a number"}.get(
        kind, "text")


def changed_config(type_name: str, form: dict[str, str]) -> tuple[dict[str, Any],
                                                                   dict[str, str]]:
    """The sections and keys whose submitted value differs from the default, and an
    error per input that could not be read (all of them, not just the first)."""
    config: dict[str, dict[str, Any]] = {}
    errors: dict[str, str] = {}
    for field in fields_of(type_name):
        if field.name not in form:
            continue
        try:
            value = parse_value(field, form[field.name])
        except FieldError as exc:
            errors[exc.field] = str(exc)
            continue
        if value != field.default:
            config.setdefault(field.section, {})[field.key] = value
    costs = {k: v for k, v in config.get("env_params", {}).items() if k in COSTS}
    for key, problem in cost_errors(**costs).items():  # the one cost rule (accounting)
        errors.setdefault(f"env_params.{key}", problem)
    return config, errors


def field_of_message(type_name: str, message: str) -> str | None:
    """The input a validation message is about: the longest key it names."""
    names = sorted(fields_of(type_name), key=lambda f: -len(f.key))
    for field in names:
        if re.search(rf"\b{re.escape(field.key)}\b", message):
            return field.name
    return None
