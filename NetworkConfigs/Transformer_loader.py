"""Loads a saved Transformer model (``Models/TRF_<name>/``): the network class and the
prediction path are the trainer's own (:mod:`NetworkConfigs.transformer_network`)."""

from __future__ import annotations

import numpy as np
import torch

from NetworkConfigs.artifacts import ArtifactError, ModelNotFound, artifact_path
from NetworkConfigs.signal_loader import SignalLoader
from NetworkConfigs.transformer_network import DirectionTransformer, transformer_outputs
from NetworkConfigs.TransformerTrainer import network_kwargs


class TransformerModelLoader(SignalLoader):
    """``TransformerModelLoader.load("Models/TRF_demo").predict(window)``."""

    def _load_model(self) -> None:
        path = artifact_path(self.model_dir, self.name, "model.pt")
        if not path.is_file():
            raise ModelNotFound(f"{self.model_dir}: model file {path.name} is missing")
        try:
            kwargs = network_kwargs({**self.config["model_params"], "target": self.target})
            net = DirectionTransformer(len(self.spec.features), self.lookback, **kwargs)
        except (KeyError, TypeError, ValueError, AssertionError) as exc:
            raise ArtifactError(f"{self.model_dir}: the config's model_params cannot build "
                                f"the network ({exc!r})") from None
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # damaged or foreign: torch's advice to unpickle is unsafe
            raise ArtifactError(f"{path}: not a readable weights file "
                                f"({type(exc).__name__})") from None
        try:
            net.load_state_dict(state)
        except (RuntimeError, TypeError, AttributeError) as exc:  # shapes or keys differ
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise ArtifactError(f"{path}: not the weights of this model's network "
                                f"({first_line})") from None
        self.net = net.eval()

    def outputs(self, x: np.ndarray) -> np.ndarray:
        return transformer_outputs(self.net, x)
