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
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from NetworkConfigs.ppo_network import ActorCritic

_BATCH = 4096  # bars per block of the one-off market pass (bounds its memory)
_KEPT_ROWS = 4096  # the closed loop's blocks are at most 2048 rows: their buffers are kept
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

    def affine_logits(self, start: int, stop: int, terms: np.ndarray, basis: np.ndarray,
                      out: np.ndarray | None = None) -> np.ndarray:
        """:meth:`logits` at bars ``start:stop`` for account rows that are affine in the
        bar's price (an open position's are): ``terms`` from :meth:`account_terms`,
        ``basis`` the bars' (bars, 2) float64 rows ``[1, close]``. One product instead
        of the rows and theirs; within float32 rounding of :meth:`logits` (the account
        part is summed in float64 before its one cast)."""
        return self._actor.affine(start, stop, terms, basis, out)

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
        self._weights = _augmented(layers[1:])
        self._torch_rest = layers[1:]
        self._kept_rows, self._kept = 0, self._make_views(0)
        self._view_cache: dict[int, list[tuple[np.ndarray, ...]]] = {}
        self._blocks: list[np.ndarray] = []
        self._market = np.empty((0, len(self._bias)), dtype=np.float32)

    def add_market(self, encoded: torch.Tensor) -> None:
        self._blocks.append(torch.addmm(self._bias, encoded, self._market_weight.T).numpy())

    def finish(self) -> None:
        if self._blocks:
            self._market = np.concatenate(self._blocks)
        self._blocks = []

    def __call__(self, rows: slice | np.ndarray, account: np.ndarray) -> np.ndarray:
        x = self._market[rows]
        views = self._views(len(x))
        np.add(x, account @ self._account_weight, out=views[0][1])
        return self._tail(views)

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
        x = self._market[rows]
        views = self._views(len(x))
        np.add(x, self._flat_shift, out=views[0][1])
        return self._tail(views, out)

    def affine(self, start: int, stop: int, terms: np.ndarray, basis: np.ndarray,
               out: np.ndarray | None = None) -> np.ndarray:
        """See :meth:`ReplayPolicy.affine_logits`: the account part is one product of
        the bars' ``[1, close]`` rows with the two terms, in float64."""
        views = self._views(stop - start)
        np.add(self._market[start:stop], np.dot(basis[start:stop], terms), out=views[0][1])
        return self._tail(views, out)

    def _tail(self, views: list[tuple[np.ndarray, ...]], out: np.ndarray | None = None
              ) -> np.ndarray:
        """The layers after the first, from the first layer's output in ``views``; the
        last one writes into ``out`` if given (the closed loop's logits rows)."""
        last = len(self._weights) - 1
        np.tanh(views[0][1], out=views[0][1])
        for i, weight in enumerate(self._weights):
            full, _, product = views[i]
            if i == last:
                return np.dot(full, weight) if out is None else np.dot(full, weight, out=out)
            np.dot(full, weight, out=product)
            np.tanh(product, out=views[i + 1][1])  # the next layer's input columns
        raise AssertionError("a trunk has a last layer")

    def _views(self, k: int) -> list[tuple[np.ndarray, ...]]:
        """Per Linear after the first: (its input rows with the ones column, the input
        columns alone, a contiguous block for its product) for ``k`` rows. Kept and
        reused for the closed loop's few block sizes; a large batch gets its own."""
        views = self._view_cache.get(k)
        if views is not None:
            return views
        if k > _KEPT_ROWS:
            return self._make_views(k)
        if k > self._kept_rows:
            self._kept_rows, self._view_cache = max(k, 2 * self._kept_rows, 64), {}
            self._kept = self._make_views(self._kept_rows)
        views = [tuple(a[:k] for a in layer) for layer in self._kept]
        self._view_cache[k] = views
        return views

    def _make_views(self, k: int) -> list[tuple[np.ndarray, ...]]:
        views = []
        for weight in self._weights:
            full = np.ones((k, len(weight)), dtype=np.float32)
            views.append((full, full[:, :-1], np.empty((k, weight.shape[1]), np.float32)))
        return views


def _augmented(layers: tuple[nn.Module, ...]) -> list[np.ndarray]:
    """The Linear layers after a trunk's first, each as its (inputs + 1, outputs)
    float32 weight with the bias as the last row: one product per layer for rows that
    end in a 1 (the closed loop calls the trunk once per fill, on blocks of a few rows,
    where each numpy call's fixed cost is most of the time). The layers must alternate
    Tanh, Linear, as ``ppo_network._mlp`` and its head build them."""
    pairs = list(zip(layers[0::2], layers[1::2], strict=False))
    if len(layers) % 2 or not all(isinstance(a, nn.Tanh) and isinstance(b, nn.Linear)
                                  for a, b in pairs):
        names = [type(layer).__name__ for layer in layers]
        raise TypeError(f"a trunk after its first layer must alternate Tanh, Linear; got "
                        f"{names}")
    return [np.vstack([linear.weight.detach().T.numpy(),
                       linear.bias.detach().numpy()[None]]).astype(np.float32)
            for _, linear in pairs]
