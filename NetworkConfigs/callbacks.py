"""Training callbacks shared by every model type (SB3's idea: the algorithm stays blind).

A trainer calls ``set_trainer``, ``on_training_start``, ``on_iteration_end(metrics)``
after every iteration/epoch (False stops training) and ``on_training_end(summary)``.
``metrics`` holds ``iteration``, ``global_step``, ``episodes`` (records finished in the
iteration) and scalar losses; callbacks pick what they understand. Trainers that say
``streams_episodes`` at the start also call ``on_episode_end(record)`` as each episode
ends. :class:`Heartbeat` and :class:`StopOnSignal` are not callbacks but the trainer
process's sign of life and its SIGINT / SIGTERM handling.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from NetworkConfigs.base import DEFAULT_KEEP_CHECKPOINTS, Callback
from Utilities.metrics_logger import MetricsLogger
from Utilities.run_store import RunNotFound, RunStore, RunStoreError, heartbeat_seconds

log = logging.getLogger(__name__)

# A checkpoint file per save (iteration zero-padded, so names sort as numbers do), and
# how many stay on disk unless a config says (train_params.keep_checkpoints).
CHECKPOINT_NAME = "iteration-{iteration:08d}.pt"
_NUMBERED = re.compile(r"iteration-(\d+)\.pt")

# Scalars forwarded to the store as train/<name> each iteration. global_step (steps for
# PPO, epochs for the others) is how far the run is: the run page's progress and ETA.
# env_steps (PPO's total env steps) and the rollout's value estimates (value_mean,
# value_std) are the live monitor's (the contract in the README).
UPDATE_KEYS = ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction",
               "explained_variance", "learning_rate", "steps_per_second", "loss",
               "train_loss", "val_loss", "train_accuracy", "val_accuracy", "global_step",
               "env_steps", "value_mean", "value_std", "validation_return_pct")


class ProgressBar(Callback):
    """A tqdm bar over environment steps (or epochs) with speed, reward and loss."""

    def __init__(self, total: int, unit: str = "step", **tqdm_kwargs: Any) -> None:
        self.total, self.unit, self.kwargs = total, unit, tqdm_kwargs
        self.bar: tqdm | None = None
        self.rewards: deque[float] = deque(maxlen=50)
        self._done = 0

    def on_training_start(self, info: dict[str, Any]) -> None:
        self.bar = tqdm(total=self.total, unit=self.unit, dynamic_ncols=True, **self.kwargs)
        self._done = int(info.get("global_step", 0))
        self.bar.update(self._done)

    def on_iteration_end(self, metrics: dict[str, Any]) -> bool:
        done = int(metrics.get("global_step", metrics.get("iteration", 0)))
        self.rewards.extend(e["reward"] for e in metrics.get("episodes", ()))
        postfix = {}
        if self.rewards:
            postfix["reward"] = f"{sum(self.rewards) / len(self.rewards):.3g}"
        for key in ("policy_loss", "loss", "val_loss"):
            if key in metrics:
                postfix[key] = f"{metrics[key]:.3g}"
        self.bar.set_postfix(postfix, refresh=False)
        self.bar.update(done - self._done)
        self._done = done
        return True

    def on_training_end(self, summary: dict[str, Any]) -> None:
        if self.bar is not None:
            self.bar.close()


class StoreLogger(Callback):
    """Episode and update metrics of one run into the run store, via MetricsLogger.

    Episodes are logged as they end when the trainer streams them (PPO), else from each
    iteration's ``episodes``: a process killed mid-iteration then loses only what the
    logger had not flushed yet (at most its 200 ms interval), not the whole iteration.
    ``heartbeat_interval`` goes to the logger (``math.inf``: a :class:`Heartbeat` beats).
    """

    def __init__(self, store: RunStore, run_id: str, *,
                 heartbeat_interval: float | None = None) -> None:
        self.metrics = MetricsLogger(store, run_id, heartbeat_interval=heartbeat_interval)
        self._episodes = 0
        self._streamed = False

    def on_training_start(self, info: dict[str, Any]) -> None:
        self._streamed = bool(info.get("streams_episodes"))

    def on_episode_end(self, record: dict[str, Any]) -> None:
        self._log_episode(record)

    def _log_episode(self, record: dict[str, Any]) -> None:
        self._episodes += 1
        extra = {k: v for k, v in record.items()
                 if k not in ("reward", "length", "win") and isinstance(v, int | float)}
        self.metrics.log_episode(self._episodes, reward=record["reward"],
                                 steps=record.get("length"), win=record.get("win"), **extra)
        if log.isEnabledFor(logging.DEBUG):  # what a killed run had logged (tests read it)
            log.debug("episode %d logged at %.3f", self._episodes, time.time())

    def on_iteration_end(self, metrics: dict[str, Any]) -> bool:
        if not self._streamed:
            for record in metrics.get("episodes", ()):
                self._log_episode(record)
        updates = {k: metrics[k] for k in UPDATE_KEYS if k in metrics}
        if updates:
            self.metrics.log_update(step=metrics.get("iteration"), **updates)
        return True

    def on_training_end(self, summary: dict[str, Any]) -> None:
        if summary.get("feature_importance"):
            self.metrics.log_feature_importance(summary["feature_importance"],
                                                kind="total_gain")
        self.metrics.close()


class RunControl(Callback):
    """Obeys the run's control field (set by the web page or the CLI) between iterations.

    ``pause`` blocks training (status paused) until ``resume`` or ``stop`` arrives;
    ``stop`` ends training (returns False). ``wait`` is how long to sleep between
    polls while paused; tests pass a function that needs no real time.
    """

    def __init__(self, store: RunStore, run_id: str, *, poll_seconds: float = 1.0,
                 wait: Callable[[float], Any] | None = None,
                 should_stop: Callable[[], bool] = lambda: False) -> None:
        self.store, self.run_id, self.poll = store, run_id, poll_seconds
        self.wait = wait or threading.Event().wait
        self.should_stop = should_stop  # e.g. Ctrl-C pressed while paused

    def on_iteration_end(self, metrics: dict[str, Any]) -> bool:
        control = self.store.trainer_control(self.run_id)  # "stop" once the run has ended
        if control == "pause":
            control = self._paused()
        if control is not None:
            self.store.clear_control(self.run_id)
        return control != "stop"

    def _paused(self) -> str:
        self.store.set_status(self.run_id, "paused")
        self.store.clear_control(self.run_id)
        log.info("run %s paused", self.run_id)
        while (control := self.store.trainer_control(self.run_id)) not in ("resume", "stop"):
            if self.should_stop():
                return "stop"
            self.store.heartbeat(self.run_id)
            self.wait(self.poll)
        if control == "resume":
            self.store.set_status(self.run_id, "running")
            log.info("run %s resumed", self.run_id)
        return control


class Checkpoints(Callback):
    """Every ``every`` iterations (and at the end) save the trainer's full state.

    Each save is a file of its own, ``iteration-<n>.pt`` (:data:`CHECKPOINT_NAME`),
    written to a temporary name and renamed into place, so a crash mid-write keeps the
    previous ones. Only the newest ``keep`` stay on disk (the CLI passes the trainer's
    ``keep_checkpoints``, the config key ``train_params.keep_checkpoints``, default 3);
    the newest is the one ``--resume`` continues from (:func:`latest_checkpoint`).
    ``on_saved(path, global_step, iteration=..., keep=...)`` hears of each save.
    """

    def __init__(self, directory: Path, every: int = 10,
                 on_saved: Callable[..., Any] | None = None,
                 extra: dict[str, Any] | None = None,
                 keep: int = DEFAULT_KEEP_CHECKPOINTS) -> None:
        self.directory, self.every, self.on_saved = Path(directory), max(1, every), on_saved
        self.extra = extra or {}  # saved alongside (e.g. the config, to resume from the file)
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise ValueError(f"keep must be a whole number >= 1; got {keep!r}")
        self.keep = keep
        self.last_saved_iteration = -1

    def on_iteration_end(self, metrics: dict[str, Any]) -> bool:
        if metrics["iteration"] % self.every == 0:
            self.save(metrics["iteration"])
        return True

    def on_training_end(self, summary: dict[str, Any]) -> None:
        # Only a clean end is an iteration boundary; an interrupted rollout is not a
        # consistent state and must not replace the last good checkpoint.
        clean = summary["status"] in ("completed", "stopped")
        if clean and summary["iterations"] != self.last_saved_iteration:
            self.save(summary["iterations"])

    def save(self, iteration: int) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        target = self.directory / CHECKPOINT_NAME.format(iteration=iteration)
        temporary = self.directory / f".{target.name}.tmp"
        torch.save({**self.trainer.state_dict(), **self.extra}, temporary)
        os.replace(temporary, target)
        self.last_saved_iteration = iteration
        keep = self.keep
        removed = prune_checkpoints(self.directory, keep)
        log.info("checkpoint saved: %s (iteration %d; %d older removed, %d kept)",
                 target, iteration, len(removed), keep)
        if self.on_saved is not None:
            self.on_saved(target, self.trainer.global_step, iteration=iteration, keep=keep)
        return target


def checkpoint_files(directory: Path) -> list[Path]:
    """The checkpoint files in a run's checkpoint folder, oldest first: the numbered
    ones by iteration, after a ``last.pt`` of a run saved before they existed."""
    folder = Path(directory)
    numbered = sorted((int(match.group(1)), path) for path in folder.glob("iteration-*.pt")
                      if (match := _NUMBERED.fullmatch(path.name)) and path.is_file())
    legacy = [folder / "last.pt"] if (folder / "last.pt").is_file() else []
    return legacy + [path for _, path in numbered]


def latest_checkpoint(directory: Path) -> Path | None:
    """The checkpoint ``--resume`` continues from: the newest in the folder, or None."""
    found = checkpoint_files(directory)
    return found[-1] if found else None


def prune_checkpoints(directory: Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` numbered checkpoints; return those deleted."""
    numbered = [p for p in checkpoint_files(directory) if p.name != "last.pt"]
    removed = numbered[:-keep] if keep > 0 else numbered
    for path in removed:
        path.unlink(missing_ok=True)  # missing: another process pruned it first
    return removed


class Heartbeat:
    """Heartbeats a run from a thread, from :meth:`start` until the context exits: the
    trainer process's sign of life through data loading, training, pauses and writing
    the model, however long an iteration takes. A run whose heartbeats stop (a kill -9,
    a crash, a lost machine) is marked lost by the run store."""

    def __init__(self, store: RunStore | None, interval: float | None = None) -> None:
        self.store = store
        self.interval = heartbeat_seconds() if interval is None else interval
        self.run_id: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Heartbeat:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 30)

    def start(self, run_id: str | None) -> None:
        """Beat for run_id from now on (nothing without a store or a run)."""
        if self.store is None or run_id is None or run_id == self.run_id:
            return
        self.run_id = run_id
        try:
            self.store.heartbeat(run_id)
        except RunStoreError as exc:
            log.warning("heartbeat of run %s failed (will retry): %s", run_id, exc)
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="run-heartbeat", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        failing = False
        while not self._stop.wait(self.interval):
            try:
                self.store.heartbeat(self.run_id)
            except RunNotFound:
                log.warning("run %s was deleted from the store; no more heartbeats", self.run_id)
                return
            except RunStoreError as exc:  # a store outage must not stop training
                if not failing:
                    log.warning("heartbeat of run %s failed (will retry): %s", self.run_id, exc)
                failing = True
                continue
            failing = False


class StopOnSignal(Callback):
    """Ctrl-C (SIGINT) or SIGTERM (``docker stop``, systemd, ``timeout``, ``kill``) asks
    training to stop after the current iteration: a checkpoint and the model trained so
    far are saved and the run is marked stopped. A second signal interrupts at once.
    Used as a context manager around the WHOLE fit, so a signal while the finished model
    is being written does not throw the model away.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self.signum: int | None = None  # the first signal received
        self._previous: dict[int, Any] = {}

    @property
    def terminated(self) -> bool:
        """Whether SIGTERM asked for the stop (the process then exits with 143)."""
        return self.signum == signal.SIGTERM

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:  # the second signal: abort now, as a second Ctrl-C always has
            raise KeyboardInterrupt(signal.Signals(signum).name)
        self.requested, self.signum = True, signum
        log.warning("%s: stopping after this iteration (send it again to abort now)",
                    signal.Signals(signum).name)

    def on_iteration_end(self, metrics: dict[str, Any]) -> bool:
        return not self.requested
