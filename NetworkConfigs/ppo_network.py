"""The PPO actor-critic network, defined once: the trainer builds it, the loader imports it.

The observation is ``[window (lookback x features, flattened), extras]``. For generic
environments (CartPole) there is no window: ``lookback=0`` and everything is extras.
Encoders see the WHOLE window (the peer implementation used only its last bar):

- ``mlp``: the flattened window through the trunk (default; cheapest);
- ``conv``: two 1-D convolutions over time, then global average and the last step;
- ``gru``: a GRU over the window, its last hidden state.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from NetworkConfigs.ppo_config import ENCODERS
from NetworkConfigs.torch_utils import gumbel_noise


def layer_init(layer: nn.Linear, std: float = math.sqrt(2), bias: float = 0.0) -> nn.Linear:
    """Orthogonal weights, constant bias (CleanRL / the PPO implementation-details study)."""
    nn.init.orthogonal_(layer.weight, std)
    nn.init.constant_(layer.bias, bias)
    return layer


def _layers(module: nn.Module) -> tuple[nn.Module, ...]:
    """The leaf layers of a (nested) Sequential, in call order."""
    return tuple(m for m in module.modules() if not isinstance(m, nn.Sequential))


def _run(layers: tuple[nn.Module, ...], x: torch.Tensor) -> torch.Tensor:
    """``Sequential(*layers)(x)`` without ``nn.Module.__call__`` (no hooks): the same
    arithmetic for a fraction of the per-call overhead, which dominates at 8 rows."""
    for layer in layers:
        x = layer.forward(x)
    return x


def _mlp(inputs: int, hidden: int, depth: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [layer_init(nn.Linear(inputs if i == 0 else hidden, hidden)), nn.Tanh()]
    return nn.Sequential(*layers)


class WindowEncoder(nn.Module):
    """Summarises a (batch, lookback, features) window into a vector (conv / gru)."""

    def __init__(self, kind: str, n_features: int, hidden: int) -> None:
        super().__init__()
        self.kind = kind
        if kind == "conv":
            self.net = nn.Sequential(nn.Conv1d(n_features, hidden, 3, padding=1), nn.Tanh(),
                                     nn.Conv1d(hidden, hidden, 3, padding=1), nn.Tanh())
            self.out_dim = 2 * hidden
        else:
            self.net = nn.GRU(n_features, hidden, batch_first=True)
            self.out_dim = hidden
        for name, weight in self.net.named_parameters():  # orthogonal, like the trunks
            if "weight" in name:
                nn.init.orthogonal_(weight, math.sqrt(2) if kind == "conv" else 1.0)
            else:
                nn.init.zeros_(weight)

    def forward(self, window: torch.Tensor) -> torch.Tensor:
        if self.kind == "conv":
            h = self.net(window.transpose(1, 2))
            return torch.cat([h.mean(dim=2), h[:, :, -1]], dim=1)
        _, last = self.net(window)
        return last[-1]


class ActorCritic(nn.Module):
    """Separate actor and critic trunks (as CleanRL's ``Agent``) over a shared encoding."""

    def __init__(self, obs_dim: int, n_actions: int, *, hidden_dim: int = 64, depth: int = 2,
                 lookback: int = 0, n_features: int = 0, encoder: str = "mlp") -> None:
        super().__init__()
        if encoder not in ENCODERS:
            raise ValueError(f"unknown encoder {encoder!r}; valid: {ENCODERS}")
        if depth < 1 or hidden_dim < 1:
            raise ValueError("hidden_dim and depth must be at least 1")
        self.window_dim = lookback * n_features
        if self.window_dim > obs_dim:
            raise ValueError(f"window {lookback}x{n_features} exceeds observation size {obs_dim}")
        self.lookback, self.n_features = lookback, n_features
        self.window_encoder = (WindowEncoder(encoder, n_features, hidden_dim)
                               if encoder != "mlp" and self.window_dim else None)
        encoded = (self.window_encoder.out_dim + obs_dim - self.window_dim
                   if self.window_encoder else obs_dim)
        self.critic = nn.Sequential(_mlp(encoded, hidden_dim, depth),
                                    layer_init(nn.Linear(hidden_dim, 1), std=1.0))
        self.actor = nn.Sequential(_mlp(encoded, hidden_dim, depth),
                                   layer_init(nn.Linear(hidden_dim, n_actions), std=0.01))
        # Plain tuples, not submodules: the parameters and state_dict keys stay as above.
        self._actor_layers, self._critic_layers = _layers(self.actor), _layers(self.critic)

    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        obs = obs.reshape(obs.shape[0], -1)  # any Box shape: the trunks see it flat
        if self.window_encoder is None:
            return obs
        window = obs[:, :self.window_dim].reshape(-1, self.lookback, self.n_features)
        return torch.cat([self.window_encoder(window), obs[:, self.window_dim:]], dim=1)

    def get_value(self, obs: torch.Tensor) -> torch.Tensor:
        return _run(self._critic_layers, self.encode(obs)).squeeze(-1)

    def _heads(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log-probabilities of the actions, value) of ``obs``."""
        hidden = self.encode(obs)
        return (torch.log_softmax(_run(self._actor_layers, hidden), dim=-1),
                _run(self._critic_layers, hidden).squeeze(-1))

    def get_action_and_value(
        self, obs: torch.Tensor, action: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sample (or score) actions: (action, log-prob, entropy, value).

        The categorical distribution written out from one ``log_softmax`` (what
        ``torch.distributions.Categorical`` computes, without building and validating an
        object per call).
        """
        log_probs, value = self._heads(obs)
        if action is None:
            action = (log_probs.detach() + gumbel_noise(log_probs.shape, obs.device)).argmax(-1)
        log_prob = log_probs.gather(-1, action.unsqueeze(-1)).squeeze(-1)
        entropy = -(log_probs.exp() * log_probs).sum(-1)
        return action, log_prob, entropy, value

    def act(self, obs: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rollout step, no grad, actor only: actions drawn with the Gumbel ``noise`` (see
        :func:`~NetworkConfigs.torch_utils.gumbel_noise`; same shape as the log-probs) and
        the log-probabilities of all actions. (Values do not steer a rollout; PPO computes
        them for the whole rollout in one batch.)"""
        with torch.no_grad():
            log_probs = torch.log_softmax(_run(self._actor_layers, self.encode(obs)), dim=-1)
            return (log_probs + noise).argmax(-1), log_probs

    @torch.no_grad()
    def policy(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Action probabilities and state values, for greedy play and serving."""
        hidden = self.encode(obs)
        return (torch.softmax(_run(self._actor_layers, hidden), dim=-1),
                _run(self._critic_layers, hidden).squeeze(-1))
