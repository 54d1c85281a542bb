"""The model-type registry: name → trainer, loader and label.

Everything that handles models of several types (``run_training.py``, ``Api_Loader.py``,
the web library, the backtester) asks this registry; nothing else branches on a type
name. A type registers with one ``register_model_type(ModelType(...))`` line below,
naming its classes as ``"module:Class"`` so importing the registry imports no framework.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from NetworkConfigs.artifacts import read_config
from NetworkConfigs.base import ModelLoader, ModelType

MODEL_TYPES: dict[str, ModelType] = {}
DEFAULT_MODEL_TYPE = "ppo"  # what the CLI trains when no type is named


class UnknownModelType(ValueError):
    """A type name that is not registered; the message lists the valid ones."""


def register_model_type(model_type: ModelType) -> ModelType:
    """Add a type; its name, prefix and label must all be new."""
    for existing in MODEL_TYPES.values():
        taken = {existing.name.lower(), existing.prefix.lower(), existing.label.lower()}
        if taken & {model_type.name.lower(), model_type.prefix.lower(), model_type.label.lower()}:
            raise ValueError(f"model type {model_type.name!r} clashes with {existing.name!r}")
    MODEL_TYPES[model_type.name] = model_type
    return model_type


def unregister_model_type(name: str) -> None:
    """Remove a type (tests register throw-away types)."""
    MODEL_TYPES.pop(name, None)


def get_model_type(name: str) -> ModelType:
    """Look a type up by name, folder prefix or label, ignoring case ('ppo', 'PPO')."""
    wanted = str(name).strip().lower()
    for model_type in MODEL_TYPES.values():
        if wanted in (model_type.name.lower(), model_type.prefix.lower(),
                      model_type.label.lower()):
            return model_type
    valid = ", ".join(sorted(MODEL_TYPES)) or "none are registered"
    raise UnknownModelType(f"unknown model type {name!r}; valid types: {valid}")


def model_type_names() -> list[str]:
    return sorted(MODEL_TYPES)


def model_type_of(model_dir: str | Path) -> ModelType:
    """The registered type of a saved model, from its config's ``Type``."""
    return get_model_type(read_config(Path(model_dir))["Type"])


def load_model(model_dir: str | Path) -> ModelLoader:
    """Load any saved model through its type's loader."""
    return model_type_of(model_dir).loader_class().load(model_dir)


def type_label(name: str | None) -> str:
    """Human label for a stored type name; unknown names are shown as they are."""
    try:
        return get_model_type(name).label if name else "unknown"
    except UnknownModelType:
        return str(name)


SIGNAL_BACKTESTER = "Utilities.signal_backtester:SignalBacktester"
register_model_type(ModelType(
    "ppo", "PPO Agent", "PPO", trainer="NetworkConfigs.PPOTrainer:PPOTrainer",
    loader="NetworkConfigs.PPO_loader:PPOModelLoader",
    backtester="Utilities.ppo_backtester:PPOBacktester"))
register_model_type(ModelType(
    "xgboost", "XGBoost Classifier", "XGB", trainer="NetworkConfigs.XGBoostTrainer:XGBoostTrainer",
    loader="NetworkConfigs.XGBoost_loader:XGBoostModelLoader", backtester=SIGNAL_BACKTESTER))
register_model_type(ModelType(
    "transformer", "Transformer", "TRF",
    trainer="NetworkConfigs.TransformerTrainer:TransformerTrainer",
    loader="NetworkConfigs.Transformer_loader:TransformerModelLoader",
    backtester=SIGNAL_BACKTESTER))

__all__: list[Any] = [
    "DEFAULT_MODEL_TYPE", "MODEL_TYPES", "ModelType", "UnknownModelType", "get_model_type",
    "load_model",
    "model_type_names", "model_type_of", "register_model_type", "type_label",
    "unregister_model_type",
]
