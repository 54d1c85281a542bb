"""Loads a saved Transformer model (``Models/TRF_<name>/``): the network class and the
prediction path are the trainer's own (:mod:`NetworkConfigs.transformer_network`)."""

from __future__ import annotations

import numpy as np

from NetworkConfigs.artifacts import ArtifactError, artifact_path, shown_path
from NetworkConfigs.config_sections import size
from NetworkConfigs.signal_loader import SignalLoader
from NetworkConfigs.transformer_network import DirectionTransformer, transformer_outputs
from NetworkConfigs.TransformerTrainer import network_kwargs
from NetworkConfigs.weights_file import read_state_dict


class TransformerModelLoader(SignalLoader):
    """``TransformerModelLoader.load("Models/TRF_demo").predict(window)``."""

    def _load_model(self) -> None:
        path = artifact_path(self.model_dir, self.name, "model.pt")
        state = read_state_dict(path, self.model_dir, "model file")
        try:
            kwargs = network_kwargs({**self.config["model_params"], "target": self.target})
            for key in ("d_model", "n_heads", "n_layers", "dim_feedforward"):
                size(kwargs, key)  # the trainer's bounds: no terabyte network from a config
            net = DirectionTransformer(len(self.spec.features), self.lookback, **kwargs)
        except (KeyError, TypeError, ValueError, AssertionError) as exc:
            raise ArtifactError(f"{self.where}: the config's model_params cannot build "
                                f"the network ({exc!r})") from None
        try:
            net.load_state_dict(state)
        except (RuntimeError, TypeError, AttributeError) as exc:  # shapes or keys differ
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise ArtifactError(f"{shown_path(path, self.model_dir)}: not the weights of "
                                f"this model's network ({first_line})") from None
        self.net = net.eval()

    def outputs(self, x: np.ndarray) -> np.ndarray:
        return transformer_outputs(self.net, x)
