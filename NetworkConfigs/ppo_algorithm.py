"""Clipped PPO (CleanRL's ``ppo.py``, layered SB3-style) over any gymnasium vector env.

rollout → GAE → update, each paper term one named line. Differences from CleanRL,
each a known correctness point:

- Gymnasium >= 1.0 vector envs must autoreset in ``SAME_STEP`` mode: the step that
  ends an episode returns the reset observation and the final one in
  ``infos["final_obs"]``. (``NEXT_STEP``, the default, would feed a fake transition.)
- Truncation (time limit, end of data) is not termination: the truncated step's reward
  gets ``gamma * V(final_obs)`` added, as SB3 does (SB3 issue #633); only terminated
  steps cut the bootstrap.
- The algorithm knows nothing of logging, progress bars, checkpoints or control:
  callbacks receive each iteration's metrics and may stop training. Each finished
  episode also goes, the moment it ends, to callbacks that define
  ``on_episode_end(record)`` (the run store's logger), so a process killed mid-
  iteration loses no episode that had ended; ``info["streams_episodes"]`` tells them.
  Callbacks that define ``on_rollout_step(obs, log_probs, actions)`` hear every vector
  step (the observations acted on, all actions' log-probabilities, the actions taken):
  the live monitor, which must cost next to nothing per call. Without such a callback
  the rollout pays nothing for the hook.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from NetworkConfigs.base import Callback, notify_iteration, run_with_callbacks
from NetworkConfigs.ppo_config import PPOSettings
from NetworkConfigs.ppo_network import ActorCritic
from NetworkConfigs.torch_utils import gumbel_noise, resolve_device, seed_everything

log = logging.getLogger(__name__)


def compute_gae(rewards: torch.Tensor, values: torch.Tensor, ends: torch.Tensor,
                terminal_next_value: torch.Tensor, gamma: float,
                gae_lambda: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over (T, N) tensors.

    ``ends[t]`` is 1 where the episode ended at step t (terminated or truncated; a
    truncated step's reward already carries its bootstrap), so nothing flows back
    across an episode boundary. Returns (advantages, returns = advantages + values).

    The backward recursion runs in float32 numpy on the host: the same arithmetic in the
    same order as torch, at a fraction of torch's per-op cost on (N,) rows.
    """
    r, v, e = (x.detach().cpu().numpy() for x in (rewards, values, ends))
    next_value = terminal_next_value.detach().cpu().numpy()
    advantages = np.zeros_like(r)
    last_gae = np.zeros_like(next_value)
    for t in reversed(range(r.shape[0])):
        not_end = 1.0 - e[t]
        delta = r[t] + gamma * next_value * not_end - v[t]
        last_gae = delta + gamma * gae_lambda * not_end * last_gae
        advantages[t] = last_gae
        next_value = v[t]
    advantages_t = torch.from_numpy(advantages).to(values.device)
    return advantages_t, advantages_t + values


def clip_grad_norm(grads: list[torch.Tensor], max_norm: float) -> torch.Tensor:
    """Scale ``grads`` in place to a global L2 norm of at most ``max_norm``; returns the norm.

    The ops of ``nn.utils.clip_grad_norm_(params, max_norm, foreach=True)``, with the
    same result, minus its per-call sorting of tensors by device and dtype, which costs
    more than the arithmetic for a small network (all our gradients share one).
    """
    total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    torch._foreach_mul_(grads, torch.clamp(max_norm / (total + 1e-6), max=1.0))
    return total


def explained_variance(y_pred: torch.Tensor, y_true: torch.Tensor) -> float:
    var_y = torch.var(y_true)
    return float("nan") if var_y == 0 else float(1 - torch.var(y_true - y_pred) / var_y)


class PPO:
    """The algorithm: ``PPO(settings, callbacks).learn(envs)`` trains and returns the agent."""

    def __init__(self, settings: PPOSettings, callbacks: Sequence[Callback] = (),
                 network_kwargs: dict[str, Any] | None = None) -> None:
        self.settings = settings
        self.callbacks = list(callbacks)
        self.network_kwargs = network_kwargs or {}
        self.device = resolve_device(settings.device)
        self.agent: ActorCritic | None = None
        self.optimizer: torch.optim.Adam | None = None
        self.iteration = 0
        self.global_step = 0
        self.envs: gym.vector.VectorEnv | None = None
        self.status = "new"
        # Written by a validation callback: best weights and their score, kept in checkpoints.
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_score: float | None = None
        self._next_obs: torch.Tensor | None = None
        self._buffers: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._ep_return = np.zeros(settings.n_envs)
        self._ep_length = np.zeros(settings.n_envs, dtype=np.int64)
        self._episode_hooks: list[Callable[[dict[str, Any]], Any]] = []
        self._step_hooks: list[Callable[..., Any]] = []

    # ------------------------------------------------------------------------ set-up

    def _build(self, envs: gym.vector.VectorEnv) -> None:
        _check_envs(envs, self.settings.n_envs)
        s = self.settings
        seed_everything(s.seed)
        obs_dim = int(np.prod(envs.single_observation_space.shape))
        self.agent = ActorCritic(obs_dim, int(envs.single_action_space.n), hidden_dim=s.hidden_dim,
                                 depth=s.depth, encoder=s.encoder,
                                 **self.network_kwargs).to(self.device)
        # fused: one kernel per parameter instead of ~10 ops each (same Adam, ~3x cheaper).
        self.optimizer = torch.optim.Adam(self.agent.parameters(), lr=s.learning_rate, eps=1e-5,
                                          fused=True)
        self.envs = envs

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(array, dtype=np.float32), device=self.device)

    # ---------------------------------------------------------------------- training

    def learn(self, envs: gym.vector.VectorEnv, state: dict[str, Any] | None = None) -> ActorCritic:
        """Train for ``total_timesteps`` (continuing from ``state`` when resuming)."""
        if self.agent is None:
            self._build(envs)
        if state is not None:
            self.load_state(state)
        else:
            obs, _ = envs.reset(seed=self.settings.seed)
            self._next_obs = self._tensor(obs)
        total = self.settings.num_iterations * self.settings.batch_size
        self._episode_hooks = [hook for callback in self.callbacks
                               if callable(hook := getattr(callback, "on_episode_end", None))]
        self._step_hooks = [hook for callback in self.callbacks
                            if callable(hook := getattr(callback, "on_rollout_step", None))]
        run_with_callbacks(self, self.callbacks, {"settings": self.settings.to_dict(),
                                                  "total": total, "streams_episodes": True},
                           self._loop)
        return self.agent

    def _loop(self) -> str:
        s = self.settings
        while self.iteration < s.num_iterations:
            started = time.perf_counter()
            frac = 1.0 - self.iteration / s.num_iterations  # linear schedules, as SB3's lin_*
            if s.anneal_lr:
                self.optimizer.param_groups[0]["lr"] = frac * s.learning_rate
            clip = frac * s.clip_coef if s.anneal_clip else s.clip_coef
            batch, episodes = self._rollout()
            losses = self._update(batch, clip)
            self.iteration += 1
            elapsed = time.perf_counter() - started
            values = batch["values"]
            metrics = {"iteration": self.iteration, "global_step": self.global_step,
                       "env_steps": self.global_step,
                       "episodes": episodes, "steps_per_second": s.batch_size / elapsed,
                       "learning_rate": self.optimizer.param_groups[0]["lr"],
                       "value_mean": float(values.mean()),
                       "value_std": float(values.std()) if len(values) > 1 else 0.0,
                       **losses}
            if not notify_iteration(self.callbacks, metrics):
                log.info("training stopped by a callback at iteration %d", self.iteration)
                return "stopped"
        return "completed"

    def _rollout(self) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
        """Collect ``n_steps`` vector steps.

        Per step: one actor call (actions sampled with Gumbel noise drawn for the whole
        rollout at once), one ``.numpy()`` of the actions, one env step; env-side data
        goes into host numpy buffers allocated once. Episode bookkeeping runs only on
        steps where an episode ended. The critic, which does not steer the rollout,
        values all its observations in one batch at the end, as do the log-probs of the
        actions taken: same weights, same values, a fraction of the per-call overhead.
        """
        s, envs, agent = self.settings, self.envs, self.agent
        obs, rewards, ends = self._host_buffers()
        obs[0] = self._next_obs.cpu().numpy()
        noise = gumbel_noise((s.n_steps, s.n_envs, envs.single_action_space.n), self.device)
        actions, log_probs = [], []
        episodes: list[dict[str, Any]] = []
        step_hooks = self._step_hooks
        for step in range(s.n_steps):
            action, log_prob = agent.act(torch.from_numpy(obs[step]).to(self.device),
                                         noise[step])
            actions.append(action)
            log_probs.append(log_prob)
            next_obs, reward, terminated, truncated, infos = envs.step(action.cpu().numpy())
            self.global_step += s.n_envs
            obs[step + 1] = next_obs
            rewards[step] = reward
            ends[step] = terminated | truncated
            if truncated.any():
                rewards[step] += self._truncation_bootstrap(terminated, truncated,
                                                            infos).cpu().numpy()
            episodes += self._track_episodes(reward, terminated, truncated, infos)
            for hook in step_hooks:
                hook(obs[step], log_prob, action)
        all_obs = self._device(obs)  # (n_steps + 1, n_envs, ...): the last row is next_obs
        self._next_obs = all_obs[-1].clone()  # not a view: checkpoints save it
        with torch.no_grad():
            values = agent.get_value(all_obs.flatten(0, 1)).reshape(s.n_steps + 1, s.n_envs)
        actions_t = torch.stack(actions)
        logprobs = torch.stack(log_probs).gather(-1, actions_t.unsqueeze(-1)).squeeze(-1)
        advantages, returns = compute_gae(self._device(rewards), values[:-1],
                                          self._device(ends), values[-1], s.gamma,
                                          s.gae_lambda)
        batch = {"obs": all_obs[:-1].flatten(0, 1), "actions": actions_t.reshape(-1),
                 "logprobs": logprobs.reshape(-1), "advantages": advantages.reshape(-1),
                 "returns": returns.reshape(-1), "values": values[:-1].reshape(-1)}
        return batch, episodes

    def _host_buffers(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """float32 (n_steps + 1, n_envs, *obs_shape) observations (the last row is the
        observation after the rollout), rewards and ends (n_steps, n_envs); reused."""
        s = self.settings
        shape = (s.n_steps, s.n_envs)
        if self._buffers is None:
            obs_shape = self.envs.single_observation_space.shape
            self._buffers = (np.zeros((s.n_steps + 1, s.n_envs, *obs_shape), np.float32),
                             np.zeros(shape, np.float32), np.zeros(shape, np.float32))
        return self._buffers

    def _device(self, array: np.ndarray) -> torch.Tensor:
        """A host buffer on the device: a copy, so the buffer can be refilled."""
        tensor = torch.from_numpy(array)
        return tensor.clone() if self.device.type == "cpu" else tensor.to(self.device)

    def _truncation_bootstrap(self, terminated: np.ndarray, truncated: np.ndarray,
                              infos: dict[str, Any]) -> torch.Tensor:
        """gamma * V(final_obs) for steps cut by a time limit, 0 elsewhere."""
        bonus = torch.zeros(self.settings.n_envs, device=self.device)
        cut = np.logical_and(truncated, np.logical_not(terminated))
        if cut.any():
            final = self._tensor(np.stack(infos["final_obs"][cut]))
            with torch.no_grad():
                bonus[torch.as_tensor(cut, device=self.device)] = (
                    self.settings.gamma * self.agent.get_value(final))
        return bonus

    def _track_episodes(self, reward: np.ndarray, terminated: np.ndarray,
                        truncated: np.ndarray, infos: dict[str, Any]) -> list[dict[str, Any]]:
        self._ep_return += reward
        self._ep_length += 1
        ended = terminated | truncated
        if not ended.any():  # most steps: nothing more to do
            return []
        done = np.flatnonzero(ended)
        finished = []
        keys = self.envs.metadata.get("episode_info_keys", ())
        for i in done:  # only envs whose episode ended: rare, so a loop is fine here
            record = {"reward": float(self._ep_return[i]), "length": int(self._ep_length[i]),
                      "terminated": bool(terminated[i]), "account": int(i)}
            for key in keys:
                if key in infos and infos.get(f"_{key}", ended)[i]:
                    record[key] = _plain(infos[key][i])
            finished.append(record)
            for hook in self._episode_hooks:
                hook(record)
        self._ep_return[done] = 0.0
        self._ep_length[done] = 0
        return finished

    def _update(self, b: dict[str, torch.Tensor], clip: float) -> dict[str, float]:
        s, agent = self.settings, self.agent
        params = list(agent.parameters())
        clipfracs, approx_kl = [], torch.tensor(0.0)
        for _ in range(s.update_epochs):
            order = torch.randperm(s.batch_size, device=self.device)
            for start in range(0, s.batch_size, s.minibatch_size):
                rows = order[start:start + s.minibatch_size]
                # index_select: a row copy, several times faster than b[key][rows] on CPU
                mb = {key: value.index_select(0, rows) for key, value in b.items()}
                _, newlogprob, entropy, newvalue = agent.get_action_and_value(mb["obs"],
                                                                              mb["actions"])
                logratio = newlogprob - mb["logprobs"]
                ratio = logratio.exp()
                with torch.no_grad():
                    approx_kl = ((ratio - 1) - logratio).mean()  # http://joschu.net/blog/kl-approx.html
                    clipfracs.append(((ratio - 1.0).abs() > clip).float().mean().item())
                mb_adv = mb["advantages"]
                if s.norm_adv and len(mb_adv) > 1:  # std of one value is NaN (as SB3 guards)
                    mb_adv = (mb_adv - mb_adv.mean()) / (mb_adv.std() + 1e-8)
                pg_loss1 = -mb_adv * ratio
                pg_loss2 = -mb_adv * torch.clamp(ratio, 1 - clip, 1 + clip)
                pg_loss = torch.max(pg_loss1, pg_loss2).mean()
                v_loss = self._value_loss(newvalue, mb["returns"], mb["values"], clip)
                entropy_loss = entropy.mean()
                loss = pg_loss - s.ent_coef * entropy_loss + s.vf_coef * v_loss
                self.optimizer.zero_grad(set_to_none=True)
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"training diverged: loss is {loss.item()} at iteration "
                        f"{self.iteration + 1}; lower learning_rate or check the data")
                loss.backward()
                clip_grad_norm([p.grad for p in params if p.grad is not None], s.max_grad_norm)
                self.optimizer.step()
            if s.target_kl is not None and approx_kl > s.target_kl:
                break
        return {"policy_loss": pg_loss.item(), "value_loss": v_loss.item(),
                "loss": loss.item(), "entropy": entropy_loss.item(), "approx_kl": approx_kl.item(),
                "clip_fraction": float(np.mean(clipfracs)),
                "explained_variance": explained_variance(b["values"], b["returns"])}

    def _value_loss(self, new: torch.Tensor, returns: torch.Tensor, old: torch.Tensor,
                    clip: float) -> torch.Tensor:
        if not self.settings.clip_vloss:
            return 0.5 * ((new - returns) ** 2).mean()
        clipped = old + torch.clamp(new - old, -clip, clip)
        return 0.5 * torch.max((new - returns) ** 2, (clipped - returns) ** 2).mean()

    @property
    def episode_returns(self) -> np.ndarray:
        """Each env's reward so far in its current episode (read-only use)."""
        return self._ep_return

    # ---------------------------------------------------------------- checkpointing

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: weights, optimiser, RNGs, env state.

        Only tensors and plain Python values, so ``torch.load(weights_only=True)`` reads it.
        """
        env_state = self.envs.get_state() if hasattr(self.envs, "get_state") else None
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        return {"model": self.agent.state_dict(), "optimizer": self.optimizer.state_dict(),
                "iteration": self.iteration, "global_step": self.global_step,
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                "numpy_rng": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)),
                              "pos": int(pos), "has_gauss": int(has_gauss),
                              "cached": float(cached)},
                "next_obs": self._next_obs.cpu(),
                "episode_return": torch.from_numpy(self._ep_return.copy()),
                "episode_length": torch.from_numpy(self._ep_length.copy()),
                "env_state": _tensors(env_state), "best_state": self.best_state,
                "best_score": self.best_score, "settings": self.settings.to_dict()}

    def load_state(self, state: dict[str, Any]) -> None:
        self.agent.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.iteration, self.global_step = int(state["iteration"]), int(state["global_step"])
        torch.set_rng_state(state["torch_rng"])
        if state.get("cuda_rng") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])  # sampling on a GPU uses these
        rng = state["numpy_rng"]
        np.random.set_state((rng["kind"], rng["keys"].numpy().astype(np.uint32), rng["pos"],
                             rng["has_gauss"], rng["cached"]))
        self._ep_return = state["episode_return"].numpy().astype(np.float64)
        self._ep_length = state["episode_length"].numpy().astype(np.int64)
        self.best_state, self.best_score = state.get("best_state"), state.get("best_score")
        if state.get("env_state") is not None:
            self.envs.set_state(_arrays(state["env_state"]))
            self._next_obs = state["next_obs"].to(self.device)
        else:  # a generic env cannot be restored mid-episode: start fresh episodes
            obs, _ = self.envs.reset(seed=self.settings.seed + self.iteration)
            self._next_obs = self._tensor(obs)
            self._ep_return[:] = 0.0
            self._ep_length[:] = 0


def _check_envs(envs: gym.vector.VectorEnv, n_envs: int) -> None:
    if not isinstance(envs.single_action_space, gym.spaces.Discrete):
        raise ValueError(f"PPO here needs a Discrete action space; got {envs.single_action_space}")
    if not isinstance(envs.single_observation_space, gym.spaces.Box):
        raise ValueError(f"PPO here needs a Box observation space; got "
                         f"{envs.single_observation_space}")
    mode = envs.metadata.get("autoreset_mode")
    if mode != gym.vector.AutoresetMode.SAME_STEP:
        raise ValueError(f"vector env must autoreset in SAME_STEP mode (got {mode}); build it with "
                         "autoreset_mode=gymnasium.vector.AutoresetMode.SAME_STEP")
    if envs.num_envs != n_envs:
        raise ValueError(f"vector env has {envs.num_envs} envs but n_envs is {n_envs}")


def _tensors(value: Any) -> Any:
    """numpy arrays → tensors, recursively (checkpoints must be weights_only-loadable)."""
    if isinstance(value, dict):
        return {k: _tensors(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value.copy())
    return value


def _arrays(value: Any) -> Any:
    """Inverse of :func:`_tensors`."""
    if isinstance(value, dict):
        return {k: _arrays(v) for k, v in value.items()}
    if isinstance(value, torch.Tensor):
        return value.numpy().copy()
    return value


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
