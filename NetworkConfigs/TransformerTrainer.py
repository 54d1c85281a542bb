"""Transformer: a ``TransformerEncoder`` over the lookback window that predicts the next
bar's direction (cross-entropy) or its return (mean squared error on returns divided by
their training spread). Epochs, early stopping and the best model are the shared loop's
(:mod:`NetworkConfigs.supervised`); the network is :mod:`NetworkConfigs.transformer_network`.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import nn

from NetworkConfigs.artifacts import ModelWriter
from NetworkConfigs.base import deep_merge
from NetworkConfigs.config_sections import DEVICES, Checks, checked, choice, size
from NetworkConfigs.signals import Samples
from NetworkConfigs.supervised import COMMON_DEFAULTS, SupervisedTrainer
from NetworkConfigs.torch_utils import resolve_device, seed_everything
from NetworkConfigs.transformer_network import DirectionTransformer, transformer_outputs
from Utilities.input_errors import InputError

DEFAULTS = deep_merge(COMMON_DEFAULTS, {
    "model_params": {"d_model": 32, "n_heads": 4, "n_layers": 2, "dim_feedforward": 64,
                     "dropout": 0.1},
    "train_params": {"epochs": 30, "patience": 5, "batch_size": 64, "learning_rate": 1e-3,
                     "weight_decay": 1e-4, "max_grad_norm": 1.0, "device": "auto",
                     "checkpoint_every": 5},
})
SMOKE = {"train_params": {"epochs": 3, "patience": 3, "checkpoint_every": 2},
         "model_params": {"d_model": 16, "n_heads": 2, "n_layers": 1, "dim_feedforward": 32}}


def network_kwargs(model_params: dict[str, Any]) -> dict[str, Any]:
    """The network's constructor arguments from ``model_params`` (trainer and loader)."""
    return {"target": model_params["target"],
            **{key: model_params[key] for key in ("d_model", "n_heads", "n_layers",
                                                  "dim_feedforward", "dropout")}}


def _check_heads(d_model: int | None, heads: int | None) -> None:
    """Attention splits d_model across the heads (and the positional code in halves)."""
    if d_model is not None and heads is not None and (d_model % heads or d_model % 2):
        raise InputError(f"d_model ({d_model}) must be even and divisible by n_heads "
                         f"({heads})", field="d_model")


def _device(name: str | None) -> torch.device | None:
    """The device named in train_params (None: its name was already refused)."""
    if name is None:
        return None
    try:
        return resolve_device(name)
    except ValueError as exc:  # cuda asked for on a machine without one
        raise InputError(str(exc), field="device") from None


class TransformerTrainer(SupervisedTrainer):
    """Registry trainer for the ``transformer`` type."""

    defaults = DEFAULTS
    smoke_config = SMOKE
    prefix, type_name = "TRF", "transformer"
    checkpoint_keys = ("model", "optimizer", "generator", "torch_rng", "iteration",
                       "global_step", "best_epoch", "best_loss")

    def _check_params(self, check: Checks) -> None:
        model, train = self.config["model_params"], self.config["train_params"]
        d_model = check(size, model, "d_model", low=2)
        heads = check(size, model, "n_heads")
        check(_check_heads, d_model, heads)
        check(size, model, "n_layers")
        check(size, model, "dim_feedforward")
        check(checked, model, "dropout", float, low=0, high=0.9)
        self.batch_size = check(size, train, "batch_size")
        self.learning_rate = check(checked, train, "learning_rate", float, low=1e-12)
        self.weight_decay = check(checked, train, "weight_decay", float, low=0)
        self.max_grad_norm = check(checked, train, "max_grad_norm", float, low=1e-9)
        self.device = check(_device, check(choice, train, "device", DEVICES))
        self.net: DirectionTransformer | None = None

    def _build(self, n_features: int, train: Samples) -> None:
        seed_everything(self.seed)
        self.net = DirectionTransformer(n_features, self.lookback,
                                        **network_kwargs(self.config["model_params"]))
        if self.target == "return":  # learn returns in units of their spread
            self.net.output_scale.fill_(float(np.std(train.returns)) or 1.0)
        self.net.to(self.device)
        self.optimizer = torch.optim.AdamW(self.net.parameters(), lr=self.learning_rate,
                                           weight_decay=self.weight_decay)
        self.generator = torch.Generator().manual_seed(self.seed)

    def _tensors(self, part: Samples) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.as_tensor(part.x, device=self.device)
        y = (torch.as_tensor(part.labels, device=self.device) if self.target == "direction"
             else torch.as_tensor(part.returns, dtype=torch.float32, device=self.device)
             / self.net.output_scale)
        return x, y

    def _loss(self, raw: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.target == "direction":
            return nn.functional.cross_entropy(raw, y)
        return nn.functional.mse_loss(raw, y)

    def _train(self, parts: dict[str, Samples]) -> None:
        train_x, train_y = self._tensors(parts["train"])
        val_x, val_y = self._tensors(parts["validation"])
        while True:
            train_loss = self._epoch(train_x, train_y)
            val_loss = self._evaluate(val_x, val_y)
            if not self.end_epoch(train_loss, val_loss, self.accuracy(parts["train"]),
                                  self.accuracy(parts["validation"])):
                return

    def _epoch(self, x: torch.Tensor, y: torch.Tensor) -> float:
        self.net.train()
        order = torch.randperm(len(x), generator=self.generator).to(self.device)
        total = 0.0
        for start in range(0, len(x), self.batch_size):
            batch = order[start:start + self.batch_size]
            loss = self._loss(self.net(x[batch]), y[batch])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(self.net.parameters(), self.max_grad_norm)
            self.optimizer.step()
            total += float(loss.detach()) * len(batch)
        return total / len(x)

    @torch.no_grad()
    def _evaluate(self, x: torch.Tensor, y: torch.Tensor) -> float:
        self.net.eval()
        return float(self._loss(self.net(x), y))

    def _snapshot(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().clone() for k, v in self.net.state_dict().items()}

    def _restore(self, snapshot: dict[str, torch.Tensor]) -> None:
        self.net.load_state_dict(snapshot)

    def outputs(self, x: np.ndarray) -> np.ndarray:
        return transformer_outputs(self.net, x)

    def _state(self) -> dict[str, Any]:
        # torch's global generator feeds dropout: without it a resume would redraw from
        # the seed and diverge from the uninterrupted run.
        return {"model": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
                "generator": self.generator.get_state(), "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available()
                else None}

    def _load_state(self, state: dict[str, Any]) -> None:
        try:
            self.net.load_state_dict(state["model"])
        except (RuntimeError, TypeError, AttributeError) as exc:
            raise ValueError(f"the checkpoint does not fit this transformer config: "
                             f"{str(exc).splitlines()[0]}") from None
        self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if state.get("cuda_rng") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])

    def _save_model(self, writer: ModelWriter) -> None:
        torch.save({k: v.cpu() for k, v in self.net.state_dict().items()},
                   writer.path("model.pt"))
