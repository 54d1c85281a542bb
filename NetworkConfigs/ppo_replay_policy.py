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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from NetworkConfigs.ppo_network import ActorCritic

_BATCH = 4096  # bars per block of the one-off market pass (bounds its memory)
_CHUNK = 4096  # rows per step of a batch through the layers (see _Trunk.batch)
_THREADS = threading.Lock()  # one thread-count change at a time (see _one_torch_thread)
# Bars of a batch: one range, or several ranges one after the other (the closed loop's
# seeds ask for the same bars once per side).
Rows = slice | Sequence[slice]


class ReplayPolicy:
    """Action logits and values at chosen bars for chosen account entries."""

    def __init__(self, agent: ActorCritic, windows: np.ndarray) -> None:
        """``windows``: (bars, lookback, features) scaled market windows, float32."""
        market_dim = (agent.window_encoder.out_dim if agent.window_encoder
                      else agent.window_dim)
        self._actor = _Trunk(agent._actor_layers, market_dim, len(windows))
        self._critic = _Trunk(agent._critic_layers, market_dim, len(windows))
        with torch.no_grad(), _one_torch_thread():
            for start in range(0, len(windows), _BATCH):
                # a contiguous copy: the windows are a read-only strided view, which
                # torch refuses to wrap (and copies element by element if asked to)
                block = torch.from_numpy(np.ascontiguousarray(
                    windows[start:start + _BATCH], dtype=np.float32))
                encoded = (agent.window_encoder(block) if agent.window_encoder
                           else block.reshape(len(block), -1))
                self._actor.add_market(start, encoded)
                self._critic.add_market(start, encoded)

    def logits(self, rows: Rows, account: np.ndarray) -> np.ndarray:
        """Actor logits (k, actions) at bars ``rows`` with ``account`` (k, account
        entries): argmax of these is the greedy action. Equal to the network's own
        forward within float32 rounding (the first layer's sum is split in two)."""
        return self._actor.batch(rows, account)

    def values(self, rows: Rows, account: np.ndarray) -> np.ndarray:
        """Critic values (k,) at bars ``rows`` with ``account``."""
        return self._critic.batch(rows, account)[:, 0]

    def __call__(self, rows: Rows, account: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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

    def __init__(self, layers: tuple[nn.Module, ...], market_dim: int, bars: int) -> None:
        first = layers[0]
        if not isinstance(first, nn.Linear):
            raise TypeError(f"a trunk must start with nn.Linear; got {type(first).__name__}")
        weight = first.weight.detach()
        self._market_weight = weight[:, :market_dim].T
        self._bias = first.bias.detach()
        # (bars, hidden): the first layer's market part and bias of every bar
        self._market = np.empty((bars, len(self._bias)), dtype=np.float32)
        self._account_weight = weight[:, market_dim:].T.contiguous()  # (entries, hidden)
        # the layers after the first: Linear as (inputs, outputs) weights for addmm
        self._rest = [(layer.weight.detach().T.contiguous(), layer.bias.detach())
                      if isinstance(layer, nn.Linear) else layer for layer in layers[1:]]
        self._widths = [len(self._bias)] + [layer.out_features for layer in layers[1:]
                                            if isinstance(layer, nn.Linear)]
        # reused between batches: each layer's output for one chunk, and the market
        # rows of a batch of several ranges
        self._scratch: list[torch.Tensor] = []
        self._gathered = np.empty((0, len(self._bias)), dtype=np.float32)

    def add_market(self, start: int, encoded: torch.Tensor) -> None:
        """The market part of bars ``start ...`` from their encoded windows."""
        out = torch.from_numpy(self._market[start:start + len(encoded)])
        torch.addmm(self._bias, encoded, self._market_weight, out=out)

    def batch(self, rows: Rows, account: np.ndarray) -> np.ndarray:
        """The trunk's output (k, outputs) at bars ``rows`` with ``account`` (k, entries):
        the precomputed market part plus the account part, then the trunk's layers,
        ``_CHUNK`` rows at a time through tensors kept between calls (torch takes each
        new tensor from the system: for a few thousand rows its page faults cost as
        much as the arithmetic; the chunks also bound an all-bars batch's memory)."""
        market = self._rows(rows)
        account = np.ascontiguousarray(account, dtype=np.float32)
        if len(account) != len(market):
            raise ValueError(f"{len(market)} bars but {len(account)} account rows")
        out = np.empty((len(account), self._widths[-1]), dtype=np.float32)
        if not self._scratch:
            self._scratch = [torch.empty(_CHUNK, width) for width in self._widths]
        with torch.no_grad(), _one_torch_thread():
            for start in range(0, len(account), _CHUNK):
                stop = min(len(account), start + _CHUNK)
                out[start:stop] = self._chunk(market[start:stop], account[start:stop])
        return out

    def _rows(self, rows: Rows) -> np.ndarray:
        """The market part of ``rows``: a view of one range, a copy of several."""
        if isinstance(rows, slice):
            return self._market[rows]
        spans = [range(len(self._market))[span] for span in rows]
        total = sum(len(span) for span in spans)
        if total > len(self._gathered):
            self._gathered = np.empty((total, self._market.shape[1]), dtype=np.float32)
        at = 0
        for span in spans:  # contiguous copies (np.take of the rows was 5x slower)
            self._gathered[at:at + len(span)] = self._market[span.start:span.stop]
            at += len(span)
        return self._gathered[:total]

    def _chunk(self, market: np.ndarray, account: np.ndarray) -> np.ndarray:
        m = len(market)
        x = self._scratch[0][:m]
        x.numpy()[:] = market
        x.addmm_(torch.from_numpy(account), self._account_weight)
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
