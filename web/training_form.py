"""The training form of each model type: its fields come from the type's defaults (the
same dict the CLI merges over), its help text from the type's commented example config
(``NetworkConfigs/example_<type>_config.yaml``), its choices and number bounds from the
rules that check them, so the form, the CLI and the docs can never disagree.

Each field shows the value the chosen preset will really use (smoke's 8,192 steps, not
the full default's 200,000). Only the values a person changed from that preset are
passed on, so the preset still applies to everything left as shown.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from NetworkConfigs import get_model_type, model_type_names
from NetworkConfigs.base import deep_merge
from NetworkConfigs.config_sections import DEVICES, LIMITS
from NetworkConfigs.ppo_config import ENCODERS
from Utilities.accounting import COSTS, cost_errors
from Utilities.data_utils import SCALERS, TRANSFORMS
from Utilities.input_errors import InputError
from Utilities.training_request import MODES

EXAMPLES = Path(__file__).resolve().parent.parent / "NetworkConfigs"
_COMMENTED_KEY = re.compile(r"^  (\w+):[^#]*#\s*(.+)$")
# The names ppo_config's and the Transformer's ``choice(train, "device", …)`` accept.
# Shown first, outside the folded "all parameters": the budget and the window.
COMMON_KEYS = ("total_timesteps", "epochs", "lookback_window")
# Form inputs of the request's own fields (a TrainingRequest error's ``field``).
REQUEST_INPUTS = {"csv_path": "csv", "model": "model_type", "model_name": "model_name",
                  "mode": "mode", "resume": "form", "config": "form", "run_id": "form"}


@dataclass(frozen=True)
class Field:
    section: str
    key: str
    default: Any
    help: str
    smoke: Any = None               # the smoke preset's value (the default where it has none)
    choices: tuple[str, ...] = ()   # a fixed set of names: a <select>

    @property
    def name(self) -> str:
        return f"{self.section}.{self.key}"

    def preset(self, mode: str) -> Any:
        """The value this field has under a preset (``smoke`` or ``full``)."""
        return self.smoke if mode == "smoke" else self.default

    @property
    def bounds(self) -> dict[str, str]:
        """``min``/``max``/``step`` of its number input, from the rules that check it."""
        if self.kind == "int":
            found = {"step": "1"}
            if self.key in LIMITS:
                found.update(min="1", max=str(LIMITS[self.key]))
            return found
        if self.kind == "float":
            fraction = self.key in ("val_fraction", "test_fraction")
            return {"step": "any", **({"min": "0", "max": "1"} if fraction else {})}
        return {}

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
    """Every parameter of a type, section by section, with its default, its smoke
    preset value, its help and its choices."""
    trainer_class = get_model_type(type_name).trainer_class()
    defaults = trainer_class(None).config
    smoke = deep_merge(defaults, trainer_class.smoke_config)
    help_for = help_texts(type_name)
    choices = {"encoder": ENCODERS, "transform": TRANSFORMS, "scaler": tuple(SCALERS),
               "device": DEVICES, "target": tuple(getattr(trainer_class, "targets", ()))}
    return tuple(Field(section, key, default, help_for.get(key, ""), smoke[section][key],
                       choices.get(key, ()))
                 for section, keys in defaults.items() if isinstance(keys, dict)
                 for key, default in keys.items())


def common_fields(type_name: str) -> list[Field]:
    """The budget (total steps, else epochs) and the lookback: shown first."""
    by_key = {field.key: field for field in fields_of(type_name)}
    budget = "total_timesteps" if "total_timesteps" in by_key else "epochs"
    return [by_key[key] for key in (budget, "lookback_window") if key in by_key]


def form_types() -> list[str]:
    return model_type_names()


def preset_values(type_name: str, mode: str) -> dict[str, str]:
    """Every input's text under a preset, as the form shows it."""
    return {field.name: field.shown(field.preset(mode)) for field in fields_of(type_name)}


def input_of(type_name: str, field: str | None) -> str:
    """The form input an error's ``field`` is about: a config key's ``section.key``, a
    request option's input (``csv_path`` is the data choice), else the form itself."""
    for spec in fields_of(type_name):
        if field in (spec.key, spec.name):
            return spec.name
    return REQUEST_INPUTS.get(field or "", "form")


def errors_by_input(type_name: str, exc: InputError) -> dict[str, str]:
    """An InputError (one or several) as ``{input: message}``, placed by field."""
    placed: dict[str, str] = {}
    for field, message in exc.errors.items():
        placed.setdefault(input_of(type_name, field), message)
    return placed


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
        raise InputError(f"{field.key} must be {_expected(kind)}; got {text!r}", field.name) \
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


def changed_config(type_name: str, form: dict[str, str],
                   mode: str = "full") -> tuple[dict[str, Any], dict[str, str]]:
    """The sections and keys whose submitted value differs from what the preset
    (``mode``) uses, and an error per input that could not be read (all of them)."""
    config: dict[str, dict[str, Any]] = {}
    errors: dict[str, str] = {}
    for field in fields_of(type_name):
        if field.name not in form:
            continue
        try:
            value = parse_value(field, form[field.name])
        except InputError as exc:
            errors[str(exc.field)] = str(exc)
            continue
        if value != field.preset(mode):
            config.setdefault(field.section, {})[field.key] = value
    costs = {k: v for k, v in config.get("env_params", {}).items() if k in COSTS}
    for key, problem in cost_errors(**costs).items():  # the one cost rule (accounting)
        errors.setdefault(f"env_params.{key}", problem)
    return config, errors


def form_values(type_name: str, config: dict[str, Any]) -> dict[str, str]:
    """The inputs' text for a recorded config (a run's, to train again)."""
    values = {}
    for field in fields_of(type_name):
        section = config.get(field.section)
        if isinstance(section, dict) and field.key in section:
            values[field.name] = field.shown(section[field.key])
    return values


def mode_of(form: dict[str, str]) -> tuple[str, str | None]:
    """The preset a form chose, and an error when it is none of :data:`MODES`."""
    mode = form.get("mode", "smoke")
    if mode in MODES:
        return mode, None
    return "smoke", f"mode must be one of {list(MODES)}; got {mode!r}"
