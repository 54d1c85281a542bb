"""The PPO policy's numpy forward (serving) against the network's own torch forward."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from NetworkConfigs.numpy_policy import NUMPY_ROWS, NumpyPolicy, serving_policy, torch_policy
from NetworkConfigs.ppo_network import ActorCritic


def torch_answers(agent: ActorCritic, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with torch.inference_mode():
        probs, values = agent.policy(torch.from_numpy(obs))
    return probs.numpy(), values.numpy()


@pytest.mark.parametrize(("obs_dim", "hidden", "depth", "seed"),
                         [(34, 64, 2, 0), (7, 8, 1, 1), (130, 32, 3, 2)])
def test_numpy_forward_equals_torch_to_float32_rounding(obs_dim, hidden, depth, seed):
    torch.manual_seed(seed)
    agent = ActorCritic(obs_dim, 3, hidden_dim=hidden, depth=depth).eval()
    with torch.no_grad():  # trained-looking weights: larger logits than the init's 0.01
        for parameter in agent.parameters():
            parameter.mul_(3)
    obs = np.random.default_rng(seed).normal(size=(4000, obs_dim)).astype(np.float32)
    policy = NumpyPolicy.of(agent)
    assert policy is not None
    for rows in (obs, obs[:1], obs[17:18]):  # a batch and single requests
        want_p, want_v = torch_answers(agent, rows)
        got_p, got_v = policy(rows)
        assert got_p.dtype == np.float32 and got_v.shape == want_v.shape
        np.testing.assert_allclose(got_p, want_p, rtol=0, atol=1e-6)
        np.testing.assert_allclose(got_v, want_v, rtol=1e-5, atol=1e-5)
        assert (got_p.argmax(1) == want_p.argmax(1)).all()
        np.testing.assert_allclose(got_p.sum(1), 1, atol=1e-6)


@pytest.mark.parametrize("encoder", ["conv", "gru"])
def test_a_window_encoder_is_served_by_torch(encoder):
    agent = ActorCritic(10 * 3 + 4, 3, hidden_dim=16, lookback=10, n_features=3,
                        encoder=encoder).eval()
    assert NumpyPolicy.of(agent) is None
    obs = np.random.default_rng(3).normal(size=(5, 34)).astype(np.float32)
    got_p, got_v = serving_policy(agent)(obs)
    want_p, want_v = torch_answers(agent, obs)
    assert np.array_equal(got_p, want_p) and np.array_equal(got_v, want_v)


def test_a_layer_numpy_does_not_mirror_keeps_torch():
    agent = ActorCritic(6, 3, hidden_dim=8, depth=1).eval()
    agent._actor_layers = (*agent._actor_layers[:-1], nn.GELU(), agent._actor_layers[-1])
    assert NumpyPolicy.of(agent) is None
    assert serving_policy(agent).__qualname__ == torch_policy(agent).__qualname__


def test_serving_takes_numpy_for_a_few_rows_and_torch_for_a_big_batch():
    torch.manual_seed(4)
    agent = ActorCritic(12, 3, hidden_dim=16).eval()
    obs = np.random.default_rng(4).normal(size=(NUMPY_ROWS + 1, 12)).astype(np.float32)
    served, mirror = serving_policy(agent), NumpyPolicy.of(agent)
    few, many = obs[:NUMPY_ROWS], obs
    assert all(np.array_equal(a, b) for a, b in zip(served(few), mirror(few), strict=True))
    assert all(np.array_equal(a, b) for a, b in zip(served(many), torch_answers(agent, many),
                                                    strict=True))
