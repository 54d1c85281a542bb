"""The PPO policy evaluated fast over a fixed series of bars (closed-loop backtests).

In a backtest the market part of every observation is known in advance; only the four
account entries depend on the agent's own earlier actions. The first layer of each trunk
is linear, so its market part is computed for all bars in one matrix product (through
the window encoder first, if the network has one). What remains per bar is the account
part and the rest of the trunks, evaluated on batches of bars (the closed loop's
windows, or all bars at once) through the network's own torch layers on one thread.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from NetworkConfigs.ppo_network import ActorCritic

_BATCH = 4096  # bars per block of the one-off market pass (bounds its memory)
_CHUNK = 4096  # rows per step of a batch through the layers (see _Trunk.batch)
_THREADS = threading.Lock()  # one thread-count change at a time (see _one_torch_thread)


class ReplayPolicy:
    """Action logits and values at chosen bars for chosen account entries."""

    def __init__(self, agent: ActorCritic, windows: np.ndarray) -> None:
        """``windows``: (bars, lookback, features) scaled market windows, float32."""
        market_dim = (agent.window_encoder.out_dim if agent.window_encoder
                      else agent.window_dim)
        self._actor = _Trunk(agent._actor_layers, market_dim)
        self._critic = _Trunk(agent._critic_layers, market_dim)
        with torch.no_grad(), _one_torch_thread():
            for start in range(0, len(windows), _BATCH):
                # a contiguous copy: the windows are a read-only strided view, which
                # torch refuses to wrap (and copies element by element if asked to)
                block = torch.from_numpy(np.ascontiguousarray(
                    windows[start:start + _BATCH], dtype=np.float32))
                encoded = (agent.window_encoder(block) if agent.window_encoder
                           else block.reshape(len(block), -1))
                self._actor.add_market(encoded)
                self._critic.add_market(encoded)
        self._actor.finish()
        self._critic.finish()

    def logits(self, rows: slice | np.ndarray, account: np.ndarray) -> np.ndarray:
        """Actor logits (k, actions) at bars ``rows`` with ``account`` (k, account
        entries): argmax of these is the greedy action. Equal to the network's own
        forward within float32 rounding (the first layer's sum is split in two)."""
        return self._actor.batch(rows, account.astype(np.float32, copy=False))

    def values(self, rows: slice | np.ndarray, account: np.ndarray) -> np.ndarray:
        """Critic values (k,) at bars ``rows`` with ``account``."""
        return self._critic.batch(rows, account.astype(np.float32, copy=False))[:, 0]

    def __call__(self, rows: slice | np.ndarray,
                 account: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities (k, actions), values (k,)) at bars ``rows`` with ``account``
        (k, account entries), float32 like the network."""
        return softmax(self.logits(rows, account)), self.values(rows, account)


@contextmanager
def _one_torch_thread() -> Iterator[None]:
    """Run the block inside on one torch thread, then restore the count.

    The market pass is ~25 ms of matrix products on one core. With a second torch
    thread and a busy machine (a training, another backtest) each product waited for
    the descheduled thread: 0.4-0.8 s instead of 0.08 s on the 2-core machine of issue
    13, the same numbers either way (a row's product does not depend on the split).
    numpy's OpenBLAS is not used for the batches for the same reason: it starts its own
    threads for products of more than ~60 rows, and they spin on the shared cores.
    The lock keeps two backtests in one process from restoring each other's count.
    """
    with _THREADS:
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(before)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, in place on ``logits`` (shifted by the row max for stability)."""
    logits -= logits.max(axis=1, keepdims=True)
    np.exp(logits, out=logits)
    logits /= logits.sum(axis=1, keepdims=True)
    return logits


class _Trunk:
    """One trunk (actor or critic) split at its first layer: market part precomputed."""

    def __init__(self, layers: tuple[nn.Module, ...], market_dim: int) -> None:
        first = layers[0]
        if not isinstance(first, nn.Linear):
            raise TypeError(f"a trunk must start with nn.Linear; got {type(first).__name__}")
        weight = first.weight.detach()
        self._market_weight, self._bias = weight[:, :market_dim], first.bias.detach()
        self._account_weight = weight[:, market_dim:].T.contiguous()  # (entries, hidden)
        # the layers after the first: Linear as (inputs, outputs) weights for addmm
        self._rest = [(layer.weight.detach().T.contiguous(), layer.bias.detach())
                      if isinstance(layer, nn.Linear) else layer for layer in layers[1:]]
        widths = [len(self._bias)] + [layer.out_features for layer in layers[1:]
                                      if isinstance(layer, nn.Linear)]
        self._width = widths[-1]
        self._blocks: list[np.ndarray] = []
        self._market = np.empty((0, len(self._bias)), dtype=np.float32)
        # scratch for one chunk: the market rows and each Linear's output, reused
        self._scratch: list[torch.Tensor] = []
        self._widths = widths

    def add_market(self, encoded: torch.Tensor) -> None:
        self._blocks.append(torch.addmm(self._bias, encoded, self._market_weight.T).numpy())

    def finish(self) -> None:
        if self._blocks:
            self._market = np.concatenate(self._blocks)
        self._blocks = []

    def batch(self, rows: slice | np.ndarray, account: np.ndarray) -> np.ndarray:
        """The trunk's output (k, outputs) at bars ``rows`` with ``account`` (k, entries)
        float32: the precomputed market part plus the account part, then the trunk's
        layers, ``_CHUNK`` rows at a time through scratch tensors kept between calls
        (torch allocates each new tensor from the system: for a few thousand rows the
        page faults cost as much as the arithmetic; the chunks also bound the memory of
        an all-bars batch)."""
        k = len(account)
        out = np.empty((k, self._width), dtype=np.float32)
        account = np.ascontiguousarray(account, dtype=np.float32)
        with torch.no_grad(), _one_torch_thread():
            for start in range(0, k, _CHUNK):
                stop = min(k, start + _CHUNK)
                out[start:stop] = self._chunk(rows, start, stop, account[start:stop])
        return out

    def _chunk(self, rows: slice | np.ndarray, start: int, stop: int,
               account: np.ndarray) -> np.ndarray:
        if not self._scratch:
            self._scratch = [torch.empty(_CHUNK, width) for width in self._widths]
        m = stop - start
        market = self._scratch[0][:m]
        if isinstance(rows, slice):
            first = rows.start or 0
            market.numpy()[:] = self._market[first + start:first + stop]
        else:
            np.take(self._market, rows[start:stop], axis=0, out=market.numpy())
        x = market.addmm_(torch.from_numpy(account), self._account_weight)
        outputs = iter(self._scratch[1:])
        for layer in self._rest:
            if isinstance(layer, tuple):
                weight, bias = layer
                x = torch.addmm(bias, x, weight, out=next(outputs)[:m])
            elif isinstance(layer, nn.Tanh):
                x = x.tanh_()
            else:  # any other layer: its own forward (a new tensor)
                x = layer.forward(x)
        return x.numpy()
