"""The Transformer network, defined once: the trainer builds it, the loader imports it.

Each bar of the lookback window is projected to ``d_model``, given a sinusoidal
position (Vaswani et al. 2017), and the window goes through a pre-norm
``TransformerEncoder``. The newest bar's representation, which attends to the whole
window, feeds the head: 3 direction logits, or 1 return in units of ``output_scale``
(the training part's return spread, kept as a buffer so a saved model carries it).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from NetworkConfigs.signals import DIRECTIONS


def sinusoidal_positions(length: int, d_model: int) -> torch.Tensor:
    """(length, d_model) fixed position codes; position 0 is the oldest bar."""
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    rate = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32)
                     * (-math.log(10_000.0) / d_model))
    codes = torch.zeros(length, d_model)
    codes[:, 0::2] = torch.sin(position * rate)
    codes[:, 1::2] = torch.cos(position * rate)[:, : d_model // 2]
    return codes


class DirectionTransformer(nn.Module):
    """Windows (N, lookback, n_features) → direction logits (N, 3) or returns (N,)."""

    def __init__(self, n_features: int, lookback: int, *, target: str = "direction",
                 d_model: int = 32, n_heads: int = 4, n_layers: int = 2,
                 dim_feedforward: int = 64, dropout: float = 0.1) -> None:
        super().__init__()
        self.target = target
        self.project = nn.Linear(n_features, d_model)
        self.register_buffer("positions", sinusoidal_positions(lookback, d_model))
        self.register_buffer("output_scale", torch.ones(()))
        layer = nn.TransformerEncoderLayer(d_model, n_heads, dim_feedforward, dropout,
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(d_model, len(DIRECTIONS) if target == "direction" else 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raw head output: logits, or the return divided by ``output_scale``."""
        h = self.drop(self.project(x) + self.positions)
        h = self.norm(self.encoder(h))[:, -1]
        out = self.head(h)
        return out if self.target == "direction" else out.squeeze(-1)


@torch.no_grad()
def transformer_outputs(net: DirectionTransformer, x: np.ndarray,
                        batch_size: int = 4096) -> np.ndarray:
    """(N, 3) probabilities or (N,) returns for windows ``x``: the one prediction path
    of training, serving and backtesting (eval mode, batched)."""
    was_training = net.training
    net.eval()
    device = next(net.parameters()).device
    chunks = []
    for start in range(0, len(x), batch_size):
        # np.array copies: windows are often read-only strided views of the features.
        batch = torch.from_numpy(np.array(x[start:start + batch_size], dtype=np.float32))
        batch = batch.to(device)
        raw = net(batch)
        out = torch.softmax(raw, dim=-1) if net.target == "direction" else raw * net.output_scale
        chunks.append(out.double().cpu().numpy())
    net.train(was_training)
    width = (len(DIRECTIONS),) if net.target == "direction" else ()
    return np.concatenate(chunks) if chunks else np.zeros((0, *width))
