"""Model serving entry point.

``load_model(model_dir)`` loads any saved model through the registry (no branching on
type names). The prediction blueprint (``/predict``, ``/info``, ``/health``) and
``python Api_Loader.py --model-dir …`` hosting are added on top of this by the
serving issue; nothing is loaded at import.
"""

from __future__ import annotations

from pathlib import Path

from NetworkConfigs import load_model as _registry_load
from NetworkConfigs.base import ModelLoader


def load_model(model_dir: str | Path) -> ModelLoader:
    """Load the model saved in ``model_dir`` with its registered type's loader."""
    return _registry_load(model_dir)
