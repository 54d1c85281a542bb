"""Train Stable-Baselines3's PPO on CartPole and watch it live in the dashboard (issue 17).

The dashboard (``make run``, or ``python Main.py``) is the metrics server: this script
registers a training session there, streams every episode, SB3's training values and a
sample of the policy's decisions while it trains, and marks the session completed (or
failed) at the end. The run appears beside the project's own runs at ``/runs/<id>``.

    pip install stable-baselines3==2.9.2     # not a dependency of the project itself
    python examples/sb3_cartpole_live.py --url http://127.0.0.1:5000 --steps 20000
    python examples/sb3_cartpole_live.py --url https://dash.example --token "$GALAXY_TOKEN"

The token (when the dashboard asks for one) is one of its API tokens
(``python Main.py tokens create NAME``; env ``GALAXY_TOKEN``). Exit status: 0 trained,
1 training failed, 2 bad arguments or no stable-baselines3.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from Utilities.metrics_client import MetricsClient

log = logging.getLogger("sb3_cartpole_live")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default=os.environ.get("GALAXY_URL", "http://127.0.0.1:5000"),
                        help="the dashboard's address (env GALAXY_URL)")
    parser.add_argument("--token", default=os.environ.get("GALAXY_TOKEN"),
                        help="an API token of the dashboard (env GALAXY_TOKEN)")
    parser.add_argument("--steps", type=int, default=20_000,
                        help="environment steps to train (default 20000)")
    parser.add_argument("--name", default=None, help="the session's name")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--decision-every", type=int, default=256, metavar="N",
                        help="send every N-th step's decision (0: none)")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    if args.decision_every < 0:
        parser.error("--decision-every must be 0 or more")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        client = MetricsClient(args.url, args.token)
    except ValueError as bad:
        log.error("--url: %s", bad)
        return 2
    try:
        from stable_baselines3 import PPO
        from stable_baselines3.common.env_util import make_vec_env

        from Utilities.sb3_metrics_callback import LiveMetricsCallback
    except ImportError as missing:
        log.error("%s: pip install stable-baselines3==2.9.2", missing)
        client.close(0)
        return 2
    callback = LiveMetricsCallback(client, name=args.name, tags=["sb3", "cartpole"],
                                   decision_every=args.decision_every)
    env = make_vec_env("CartPole-v1", n_envs=1, seed=args.seed)  # Monitor: episode infos
    model = PPO("MlpPolicy", env, n_steps=512, batch_size=64, n_epochs=4, seed=args.seed,
                device="cpu", verbose=0)
    status = 0
    try:
        model.learn(total_timesteps=args.steps, callback=callback)
    except Exception as error:
        log.exception("training failed")
        callback.fail(error)
        status = 1
    finally:
        client.close()
        env.close()
    session = callback.session
    if session is not None and session.session_id:
        log.info("session %s: %s/runs/%s (%s)", session.name, args.url.rstrip("/"),
                 session.session_id, client.stats())
    else:
        log.warning("the dashboard never registered the session (%s)",
                    client.stats()["last_error"] or (session and session.failed))
    return status


if __name__ == "__main__":
    sys.exit(main())
