"""What alerts cost a training loop when their channels are down. Prints one JSON object.

A simulated training loop (a 64×64 numpy step, a few µs: a worst case) sends an alert
every ``--every`` steps (force=True, so throttling never hides the cost) through an AlertSystem
whose channel is, in turn: none (the baseline: the dashboard only), a webhook that hangs (an
HTTP server that accepts and never answers), one that answers 500, and an SMTP host
that refuses connections. Each mode runs ``--repeats`` times, interleaved; the figure is
the loop's wall time per step against the baseline's, the training thread's own CPU per
step (what a busy machine's noise leaves alone) and the calling thread's CPU inside
``send_alert``. Goal (issue 16): a failing channel never slows training: the
ratio stays within the machine's noise (a few %), and ``send_alert`` costs microseconds.

Usage: python bench/alert_overhead.py [--steps 200000] [--every 2000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import socket
import statistics
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from Utilities.alert_system import AlertSystem

HOLD = threading.Event()


class Server(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path == "/hang":
            HOLD.wait(60)
        self.send_response(500 if self.path == "/fail" else 204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def modes(base: str) -> dict[str, dict]:
    delivery = {"timeout_seconds": 5, "retries": 3, "backoff_seconds": 0.5}
    return {
        "none": {},
        "webhook_hangs": {"webhook": {"url": f"{base}/hang"}, "delivery": delivery},
        "webhook_500": {"webhook": {"url": f"{base}/fail"}, "delivery": delivery},
        "smtp_refused": {"email": {"smtp_host": "127.0.0.1", "smtp_port": closed_port(),
                                   "security": "none", "to_addrs": ["ops@example.org"]},
                         "delivery": delivery},
    }


def loop(config: dict, steps: int, every: int) -> dict[str, float]:
    alerts = AlertSystem(config)
    weights = np.random.default_rng(0).standard_normal((64, 64)) / 8
    state = np.ones(64)
    send_cpu = 0.0
    start, start_cpu = time.perf_counter(), time.thread_time()
    for step in range(steps):
        state = np.tanh(weights @ state)
        if step % every == 0:
            cpu = time.thread_time()
            alerts.send_alert("warning", "bench", f"step {step}", {"step": step}, force=True)
            send_cpu += time.thread_time() - cpu
    wall, cpu = time.perf_counter() - start, time.thread_time() - start_cpu
    alerts.close(0.1)  # hung deliveries are abandoned, not waited for
    sends = (steps + every - 1) // every
    return {"us_per_step": wall / steps * 1e6, "cpu_us_per_step": cpu / steps * 1e6,
            "send_alert_cpu_us": send_cpu / sends * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=200_000)
    parser.add_argument("--every", type=int, default=2_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # every failed delivery warns; here on purpose
    server = ThreadingHTTPServer(("127.0.0.1", 0), Server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    configs = modes(f"http://127.0.0.1:{server.server_address[1]}")
    runs: dict[str, list[dict]] = {name: [] for name in configs}
    loop({}, args.steps // 10, args.every)  # warm-up
    for _ in range(args.repeats):
        for name, config in configs.items():
            runs[name].append(loop(config, args.steps, args.every))
    HOLD.set()
    server.shutdown()
    base = statistics.median(r["us_per_step"] for r in runs["none"])
    base_cpu = statistics.median(r["cpu_us_per_step"] for r in runs["none"])
    result = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
              "steps": args.steps, "alert_every_steps": args.every, "repeats": args.repeats,
              "modes": {}}
    for name, mode_runs in runs.items():
        per_step = statistics.median(r["us_per_step"] for r in mode_runs)
        cpu = statistics.median(r["cpu_us_per_step"] for r in mode_runs)
        result["modes"][name] = {
            "us_per_step": round(per_step, 3),
            "ratio_to_none": round(per_step / base, 3),
            "cpu_us_per_step": round(cpu, 3),
            "cpu_ratio_to_none": round(cpu / base_cpu, 3),
            "send_alert_cpu_us": round(statistics.median(r["send_alert_cpu_us"]
                                                         for r in mode_runs), 2),
            "us_per_step_by_repeat": [round(r["us_per_step"], 3) for r in mode_runs]}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
