"""The PPO policy evaluated fast over a fixed series of bars (closed-loop backtests).

In a backtest the market part of every observation is known in advance; only the four
account entries depend on the agent's own earlier actions. The first layer of each trunk
is linear, so its market part is computed for all bars in one matrix product (through
the window encoder first, if the network has one). What remains per bar is the account
part and the rest of the trunks: a few small matrix products, done in numpy on blocks of
bars because torch's per-call overhead dominates at this size.

The numpy trunk replays the network's own layers (Linear and Tanh, as
``ppo_network._mlp`` builds them); a test pins it to ``ActorCritic.policy``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from NetworkConfigs.ppo_network import ActorCritic

_BATCH = 4096  # bars per block of the one-off market pass (bounds its memory)
_BIAS_ROWS = 64  # a closed-loop block has this many rows or fewer, nearly always
_THREADS = threading.Lock()  # one thread-count change at a time (see _one_torch_thread)


class ReplayPolicy:
    """Action probabilities and values at chosen bars for chosen account entries."""

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
        """Actor logits (k, actions): argmax of these is the greedy action."""
        return self._actor(rows, account.astype(np.float32, copy=False))

    def flat_logits(self, rows: slice | np.ndarray, equity_entry: float,
                    out: np.ndarray | None = None) -> np.ndarray:
        """:meth:`logits` for a flat account, whose entries are ``[equity_entry, 0, 0,
        0]`` on every row (see :meth:`_Trunk.flat`): the same numbers, without building
        the account rows and their matrix product."""
        return self._actor.flat(rows, equity_entry, out)

    def account_terms(self, coefficients: np.ndarray) -> np.ndarray:
        """(2, hidden) float64: what account rows ``coefficients[0] + price *
        coefficients[1]`` (each (account entries,) float64) add to the actor's first layer,
        as its constant and its slope in the price (see :meth:`affine_logits`)."""
        return coefficients @ self._actor.account_weight64

    def affine_logits(self, start: int, stop: int, terms: np.ndarray, price: np.ndarray,
                      out: np.ndarray | None = None) -> np.ndarray:
        """:meth:`logits` at bars ``start:stop`` for account rows that are affine in the
        bar's price (an open position's are): ``terms`` from :meth:`account_terms`,
        ``price`` the (bars, 1) float64 column. Three array operations instead of the
        rows and their product; within float32 rounding of :meth:`logits` (the account
        part is summed in float64 before its one cast)."""
        return self._actor.affine(start, stop, terms, price, out)

    def values(self, rows: slice | np.ndarray, account: np.ndarray) -> np.ndarray:
        """Critic values (k,): one batch over all of a backtest's bars, so the trunk's
        own torch layers on one thread (faster than numpy's for many rows)."""
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
        self._account_weight = weight[:, market_dim:].T.numpy().copy()
        self.account_weight64 = self._account_weight.astype(np.float64)
        self._flat_entry, self._flat_shift = np.nan, self._account_weight[0]
        self._input = np.empty((0, len(self._bias)), dtype=np.float32)
        self._rest = [_numpy_layer(layer) for layer in layers[1:]]
        self._torch_rest = layers[1:]
        self._blocks: list[np.ndarray] = []
        self._market = np.empty((0, len(self._bias)), dtype=np.float32)

    def add_market(self, encoded: torch.Tensor) -> None:
        self._blocks.append(torch.addmm(self._bias, encoded, self._market_weight.T).numpy())

    def finish(self) -> None:
        if self._blocks:
            self._market = np.concatenate(self._blocks)
        self._blocks = []

    def __call__(self, rows: slice | np.ndarray, account: np.ndarray) -> np.ndarray:
        return self._tail(self._market[rows] + account @ self._account_weight)

    def batch(self, rows: slice | np.ndarray, account: np.ndarray) -> np.ndarray:
        """:meth:`__call__` through torch on one thread (see ``_one_torch_thread``): for
        many rows at once, where numpy's products would start threads of their own."""
        with torch.no_grad(), _one_torch_thread():
            x = torch.addmm(torch.from_numpy(np.ascontiguousarray(self._market[rows])),
                            torch.from_numpy(account), torch.from_numpy(self._account_weight))
            for layer in self._torch_rest:
                x = layer(x)
        return x.numpy()

    def flat(self, rows: slice | np.ndarray, equity_entry: float,
             out: np.ndarray | None = None) -> np.ndarray:
        """:meth:`__call__` where every account row is ``[equity_entry, 0, 0, 0]``.

        A row's product with the account weights is then ``equity_entry * weight[0]``
        exactly, one rounding as in the matrix product (the zero terms add nothing), so
        it is computed once for the block; ``+ 0.0`` turns a ``-0.0`` product into the
        ``+0.0`` a matrix product's sum gives.
        """
        if equity_entry != self._flat_entry:  # it changes once per closed trade
            self._flat_shift = (np.float32(equity_entry) * self._account_weight[0]
                                + np.float32(0.0))
            self._flat_entry = equity_entry
        return self._tail(self._market[rows] + self._flat_shift, out)

    def affine(self, start: int, stop: int, terms: np.ndarray, price: np.ndarray,
               out: np.ndarray | None = None) -> np.ndarray:
        """See :meth:`ReplayPolicy.affine_logits`. The sum lands in a kept float32
        buffer (the trunk's first step works in place on it and then makes new arrays)."""
        part = price[start:stop] * terms[1]
        part += terms[0]
        if len(self._input) < stop - start:
            self._input = np.empty((2 * (stop - start), self._input.shape[1]), np.float32)
        return self._tail(np.add(self._market[start:stop], part,
                                 out=self._input[:stop - start]), out)

    def _tail(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """The layers after the first; the last one writes into ``out`` if given (the
        closed loop's logits rows: no copy afterwards)."""
        for layer in self._rest[:-1]:
            x = layer(x, None)
        return self._rest[-1](x, out)


def _numpy_layer(layer: nn.Module) -> Callable[[np.ndarray, np.ndarray | None], np.ndarray]:
    """The layer as a numpy function. In place where it can be: the trunk's input is a
    fresh array (a sum) and so is every product, and the closed loop calls these once
    per fill, on blocks of a few rows, where each numpy call's fixed cost is most of
    the time: ``np.dot`` costs half of ``@`` there (the same BLAS product), and the bias
    is added from rows of its own shape (broadcasting one row costs twice as much)."""
    if isinstance(layer, nn.Tanh):
        return lambda x, out: np.tanh(x, out=x if out is None else out)
    if isinstance(layer, nn.Linear):
        weight = layer.weight.detach().T.numpy().copy()
        bias = layer.bias.detach().numpy().copy()
        bias_rows = np.tile(bias, (_BIAS_ROWS, 1))

        def linear(x: np.ndarray, out: np.ndarray | None) -> np.ndarray:
            out = np.dot(x, weight, out=out)
            if len(out) <= _BIAS_ROWS:
                np.add(out, bias_rows[:len(out)], out=out)
            else:
                out += bias
            return out

        return linear
    raise TypeError(f"unsupported trunk layer {type(layer).__name__}")
