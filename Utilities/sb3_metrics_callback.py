"""A Stable-Baselines3 callback that streams a training live into the dashboard through
:mod:`Utilities.metrics_client` (issue 17).

Stable-Baselines3 is not a dependency of this project: it is imported only when
:class:`LiveMetricsCallback` is first used (``from Utilities.sb3_metrics_callback import
LiveMetricsCallback``), and :class:`SB3Reporter`, which does the work, needs none of it.

What is sent, and where the dashboard finds it:

- the session, at the start of ``learn()``: the algorithm's class name, its
  hyperparameters (learning rate, n_steps, batch size, gamma, ...) and the number of
  timesteps asked for;
- every finished episode (the ``info["episode"]`` a ``Monitor`` wrapper adds; ``make_vec_env``
  adds one) as a TrainingMetricsData item: ``episode/reward``, ``episode/average_reward``
  (last 100), ``episode/best_reward``, ``episode/steps`` at step = the episode's number.
  The first episode after an update also carries that update's ``train/loss``,
  ``train/learning_rate`` and ``train/frames_per_second``;
- after every rollout, everything SB3's logger recorded (``train/entropy_loss``,
  ``train/approx_kl``, ``train/clip_fraction``, ``rollout/ep_rew_mean``, ...) as
  performance graphs ``graph/<train|rollout|...>/<name>`` at step = timesteps so far;
- with ``decision_every=N``, every N-th step of the first environment as a decision
  (action taken, the policy's action probabilities for a discrete action space, the value
  estimate);
- at the end, the status ``completed`` with a summary (timesteps, episodes, best and mean
  reward). A training that raised: call :meth:`SB3Reporter.fail` (the example does).

The run page's Stop button is obeyed: when an ingest reply says ``control: stop`` the
callback returns False (SB3 ends ``learn()`` after this step) and the session ends
``stopped``. Pause and resume are left to the script (``callback.session.control``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from functools import cache
from numbers import Real
from typing import Any

from Utilities.metrics_client import MetricsClient, TrainingSession

log = logging.getLogger(__name__)

# Model attributes sent as the session's hyperparameters when they are plain values.
HYPERPARAMETERS = ("learning_rate", "n_steps", "batch_size", "n_epochs", "gamma",
                   "gae_lambda", "ent_coef", "vf_coef", "max_grad_norm", "seed",
                   "buffer_size", "learning_starts", "tau", "train_freq",
                   "gradient_steps", "target_update_interval", "exploration_fraction",
                   "n_envs")
# SB3 logger keys carried by the next episode's TrainingMetricsData item.
TRAIN_FIELDS = {"train/loss": "loss_value", "train/learning_rate": "learning_rate",
                "rollout/exploration_rate": "epsilon"}


def graph_points(values: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """SB3 logger values grouped into graphs by their prefix (``train/approx_kl`` →
    graph ``train``, metric ``approx_kl``); numbers only, names in the server's alphabet."""
    graphs: dict[str, dict[str, float]] = {}
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, Real):
            continue
        group, _, name = key.partition("/")
        if not name:
            group, name = "sb3", key
        graphs.setdefault(clean(group), {})[clean(name)] = float(value)
    return graphs


def clean(name: str) -> str:
    """A graph or metric name the server accepts: 1 to 64 of ``A-Z a-z 0-9 _ . : -``."""
    kept = "".join(c if c.isascii() and (c.isalnum() or c in "_.:-") else "." for c in name)
    return kept[:64] or "value"


def plain_hyperparameters(model: Any) -> dict[str, Any]:
    found: dict[str, Any] = {"policy": type(getattr(model, "policy", None)).__name__}
    for name in HYPERPARAMETERS:
        value = getattr(model, name, None)
        if isinstance(value, bool | int | float | str):
            found[name] = value
        elif isinstance(value, tuple) and all(isinstance(v, int | str) for v in value):
            found[name] = list(value)  # train_freq (4, "step")
    return found


class SB3Reporter:
    """The callback's work, without Stable-Baselines3 (the callback passes its model,
    locals and logger values in)."""

    def __init__(self, client: MetricsClient, *, name: str | None = None,
                 tags: Iterable[str] = (), experiment: str | None = None,
                 description: str | None = None, decision_every: int = 0,
                 close_client: bool = False) -> None:
        self.client, self.name, self.tags = client, name, list(tags)
        self.experiment, self.description = experiment, description
        self.decision_every, self.close_client = decision_every, close_client
        self.session: TrainingSession | None = None
        self.pending_train: dict[str, float] = {}
        self.last_rate_at: tuple[float, int] | None = None
        self.update_step: int | None = None  # timesteps when the next update runs
        self.stopping = False  # the dashboard asked to stop

    def start(self, model: Any, total_timesteps: int | None) -> TrainingSession:
        algorithm = type(model).__name__
        env_id = getattr(getattr(model, "env", None), "envs", [None])[0]
        env_name = getattr(getattr(env_id, "spec", None), "id", None) if env_id else None
        name = self.name or f"sb3-{algorithm.lower()}-{env_name or 'env'}-{int(time.time())}"
        hyper = plain_hyperparameters(model)
        if total_timesteps:
            hyper["total_timesteps"] = int(total_timesteps)
        self.session = self.client.register_training_session(
            name, algorithm=algorithm, hyperparameters=hyper, tags=self.tags or ("sb3",),
            experiment=self.experiment, description=self.description)
        self.last_rate_at = (time.monotonic(), int(getattr(model, "num_timesteps", 0)))
        return self.session

    def step(self, model: Any, local: Mapping[str, Any]) -> bool:
        """One environment step of every env: finished episodes, and a decision. False
        when the dashboard asked the training to stop."""
        if self.session is None:
            return True
        for info in local.get("infos") or ():
            episode = info.get("episode") if isinstance(info, dict) else None
            if episode:
                extra, self.pending_train = self.pending_train, {}
                self.session.record_episode_end(
                    episode.get("r"), episode_length=int(episode.get("l", 0)), **extra)
        if self.decision_every and model.num_timesteps % self.decision_every == 0:
            self.decision(model, local)
        if self.session.control == "stop":
            if not self.stopping:
                log.info("the dashboard asked session %s to stop", self.session.session_id)
            self.stopping = True
        return not self.stopping

    def decision(self, model: Any, local: Mapping[str, Any]) -> None:
        """The first env's action, and its probabilities where the policy has them."""
        try:
            actions = local.get("actions")
            action = actions[0] if actions is not None else None
            fields: dict[str, Any] = {"episode": self.session.episodes + 1,
                                      "step": int(model.num_timesteps)}
            values = local.get("values")
            if values is not None:
                fields["state_values"] = float(values.flatten()[0])
            obs = local.get("obs_tensor")
            if obs is not None:
                import torch

                with torch.no_grad():
                    dist = model.policy.get_distribution(obs).distribution
                probs = getattr(dist, "probs", None)
                if probs is not None:
                    row = probs[0].tolist()
                    fields["action_probabilities"] = {str(i): p for i, p in enumerate(row)}
                    fields["confidence_score"] = max(row)
            selected = action.item() if hasattr(action, "item") and action.size == 1 \
                else str(getattr(action, "tolist", lambda: action)())
            self.session.record_decision(selected, **fields)
        except Exception:  # a decision is a nicety: never stop the training for one
            log.debug("decision not recorded", exc_info=True)

    def rollout_end(self, model: Any, values: Mapping[str, Any], final: bool = False) -> None:
        """What SB3's logger holds: the last update's ``train/*`` (made after the previous
        rollout, so sent at that rollout's step) and this rollout's other values (at
        this step). ``final``: after the last update (its ``train/*`` only)."""
        if self.session is None:
            return
        step = int(model.num_timesteps)
        for graph_id, points in graph_points(values).items():
            if graph_id == "train":
                if self.update_step is not None:
                    self.session.update_graph(graph_id, points, step=self.update_step)
            elif not final:
                self.session.update_graph(graph_id, points, step=step)
        self.update_step = step  # the update that follows this rollout
        if final:
            return
        self.pending_train = {field: float(values[key]) for key, field in TRAIN_FIELDS.items()
                              if isinstance(values.get(key), Real)}
        now = time.monotonic()
        if self.last_rate_at is not None and now > self.last_rate_at[0]:
            rate = (step - self.last_rate_at[1]) / (now - self.last_rate_at[0])
            self.pending_train["frames_per_second"] = rate
            self.pending_train["actions_per_second"] = rate
        self.last_rate_at = (now, step)

    def end(self, model: Any, values: Mapping[str, Any]) -> None:
        if self.session is None:
            return
        self.rollout_end(model, values, final=True)  # the last update's losses
        self.session.end("stopped" if self.stopping else "completed",
                         summary=self.summary(model))
        self.finish()

    def fail(self, error: BaseException | str) -> None:
        """The training raised: the session ends ``failed`` with the error."""
        if self.session is not None:
            self.session.end("failed", error=str(error)[:500])
        self.finish()

    def summary(self, model: Any) -> dict[str, Any]:
        session = self.session
        recent = list(session.recent)
        return {"total_timesteps": int(model.num_timesteps), "episodes": session.episodes,
                "best_reward": session.best_reward,
                "mean_reward_last_100": sum(recent) / len(recent) if recent else None}

    def finish(self) -> None:
        if self.close_client:
            self.client.close()
        else:
            self.client.flush(self.client.close_timeout)


@cache
def callback_class() -> type:
    """LiveMetricsCallback, built on first use (the import of SB3 happens here)."""
    from stable_baselines3.common.callbacks import BaseCallback

    class LiveMetricsCallback(BaseCallback):
        """Streams an SB3 training into the dashboard. Pass a ``client`` or a ``url``
        (and ``token``): a client made here is closed at the end of training."""

        def __init__(self, client: MetricsClient | None = None, *, url: str | None = None,
                     token: str | None = None, name: str | None = None,
                     tags: Iterable[str] = (), experiment: str | None = None,
                     description: str | None = None, decision_every: int = 0,
                     verbose: int = 0) -> None:
            super().__init__(verbose)
            if client is None and not url:
                raise ValueError("LiveMetricsCallback needs a client or a url")
            own = client is None
            self.reporter = SB3Reporter(
                client or MetricsClient(url, token), name=name, tags=tags,
                experiment=experiment, description=description,
                decision_every=decision_every, close_client=own)

        @property
        def session(self) -> TrainingSession | None:
            return self.reporter.session

        def _on_training_start(self) -> None:
            self.reporter.start(self.model, self.locals.get("total_timesteps"))

        def _on_step(self) -> bool:
            return self.reporter.step(self.model, self.locals)

        def _on_rollout_end(self) -> None:
            self.reporter.rollout_end(self.model, dict(self.model.logger.name_to_value))

        def _on_training_end(self) -> None:
            self.reporter.end(self.model, dict(self.model.logger.name_to_value))

        def fail(self, error: BaseException | str) -> None:
            self.reporter.fail(error)

    return LiveMetricsCallback


def __getattr__(name: str) -> Any:
    if name == "LiveMetricsCallback":
        return callback_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
