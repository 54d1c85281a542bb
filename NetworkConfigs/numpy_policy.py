"""The PPO policy's serving forward (:meth:`ActorCritic.policy`) evaluated with numpy.

Why (issue 13, ``/predict``): every torch operation releases the GIL, so inside the
model server each of the policy's ~11 operations handed the interpreter to waitress's
I/O thread and waited to get it back. Measured under four clients: a prediction's
thread CPU 0.51 ms and wall 0.70 ms with torch against 0.37 and 0.41 ms this way, and
1,055 against 1,270 requests/s. numpy keeps the GIL over arrays this small, and skips
torch's per-operation dispatch.

It reads the network's own layers (the weights are copied once, as float32), so there
is one definition of the network: a layer type other than Linear or Tanh, or a
window encoder (conv or GRU), and :meth:`NumpyPolicy.of` answers None and the loader
keeps torch. The arithmetic is torch's in float32 (affine, activation, a max-shifted
softmax), but numpy's BLAS sums in another order than torch's: probabilities and values
agree to float32 rounding (at most ~1e-7 on 20,000 random observations, the most likely
action the same every time), as a batch and a single request already did under torch.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

Layer = Callable[[np.ndarray], np.ndarray]


def _affine(layer: nn.Linear) -> Layer:
    weight = layer.weight.detach().cpu().numpy().astype(np.float32).T.copy()
    bias = layer.bias.detach().cpu().numpy().astype(np.float32).copy() \
        if layer.bias is not None else np.zeros(weight.shape[1], np.float32)

    def forward(x: np.ndarray) -> np.ndarray:
        out = x @ weight
        out += bias
        return out
    return forward


def _numpy_layers(layers: tuple[nn.Module, ...]) -> list[Layer] | None:
    """numpy stand-ins of a trunk's layers, or None if one has none."""
    out: list[Layer] = []
    for layer in layers:
        if isinstance(layer, nn.Linear):
            out.append(_affine(layer))
        elif isinstance(layer, nn.Tanh):
            out.append(np.tanh)
        else:
            return None
    return out


def _run(layers: list[Layer], x: np.ndarray) -> np.ndarray:
    for layer in layers:
        x = layer(x)
    return x


class NumpyPolicy:
    """``policy(obs) -> (probabilities, values)`` of an ActorCritic, float32 arrays."""

    def __init__(self, actor: list[Layer], critic: list[Layer]) -> None:
        self._actor, self._critic = actor, critic

    @classmethod
    def of(cls, agent: nn.Module) -> NumpyPolicy | None:
        """The agent's policy in numpy, or None where it has a part numpy does not
        mirror (then serve with torch)."""
        if getattr(agent, "window_encoder", None) is not None:
            return None
        actor = _numpy_layers(getattr(agent, "_actor_layers", ()))
        critic = _numpy_layers(getattr(agent, "_critic_layers", ()))
        if not actor or not critic:
            return None
        return cls(actor, critic)

    def __call__(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.ascontiguousarray(obs, dtype=np.float32).reshape(len(obs), -1)
        logits = _run(self._actor, x)
        shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
        probs = shifted / shifted.sum(axis=-1, keepdims=True)
        return probs, _run(self._critic, x)[:, 0]


def torch_policy(agent: nn.Module) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The same call through torch (a network numpy does not mirror)."""

    def policy(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            probs, values = agent.policy(torch.from_numpy(obs))
        return probs.numpy(), values.numpy()
    return policy


# Rows up to which numpy answers. A bigger batch goes to torch: its per-operation cost
# is spread over the rows there, and numpy's BLAS would start threads for it that spin
# while they wait (a batch of 100 windows cost 21.9 ms of server CPU against 11.8 ms
# with torch, at the same requests/s).
NUMPY_ROWS = 8


def serving_policy(agent: nn.Module) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """numpy for a few rows where it mirrors the network, else torch."""
    mirror, torch_forward = NumpyPolicy.of(agent), torch_policy(agent)
    if mirror is None:
        return torch_forward

    def policy(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (mirror if len(obs) <= NUMPY_ROWS else torch_forward)(obs)
    return policy
