"""Serving speed of a PPO model: in-process predict latency and HTTP throughput.
Prints one JSON object.

1. ``predict``: p50 / p99 / mean of ``loader.predict`` over ``--calls`` calls (after a
   warm-up) on a realistic window: ``window_size`` consecutive bars of sample.csv as a
   list of dicts, the form the API hands over from JSON. Also the p50 of the other two
   window forms and of each stage of the serving path (validation, the feature
   transform, the scaler, the policy), to show where the time goes. Goals: p50 <= 1 ms,
   p99 <= 5 ms.
2. HTTP: ``python Api_Loader.py`` (waitress) in a subprocess on a free port; ``--clients``
   threads, each with one keep-alive ``http.client`` connection, send requests for
   ``--seconds``: ``GET /health`` (what waitress + Flask alone can do), then ``POST
   /predict`` with a full window, then with one bar per request to the client's own
   stream (warmed up first). Requests/s, latency p50/p99, non-200 count and the server
   process's CPU time per request (Linux). Goal: >= 1,000 requests/s on 2 cores. The
   clients run on the same machine and take part of its CPU.

Without ``--model-dir`` a model is trained for the bench in a temporary folder: the
default network (lookback 30, 2 x 64 tanh MLP) on a smoke budget (the weights' quality
does not change the cost of a prediction).

Usage: python bench/predict_latency.py [--model-dir Models/PPO_x] [--calls 2000]
           [--clients 4] [--seconds 4] [--server-threads 8] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import http.client
import io
import json
import os
import platform
import pstats
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from NetworkConfigs import load_model  # noqa: E402
from NetworkConfigs.base import deep_merge  # noqa: E402
from NetworkConfigs.ppo_config import SMOKE  # noqa: E402
from NetworkConfigs.PPO_loader import PPOModelLoader  # noqa: E402
from NetworkConfigs.PPOTrainer import PPOTrainer  # noqa: E402
from Utilities.data_utils import load_bars, transform_features, window_frame  # noqa: E402

BENCH_MODEL = deep_merge(SMOKE, {"model_params": {"lookback_window": 30},
                                 "train_params": {"total_timesteps": 2048}})


def percentiles_ms(seconds: list[float] | np.ndarray) -> dict[str, float]:
    ms = np.asarray(seconds) * 1e3
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3),
            "p99_ms": round(float(np.percentile(ms, 99)), 3),
            "mean_ms": round(float(ms.mean()), 3)}


def time_calls(call: Callable[[], Any], n: int, warmup: int = 100) -> list[float]:
    for _ in range(warmup):
        call()
    clock, samples = time.perf_counter, []
    for _ in range(n):
        start = clock()
        call()
        samples.append(clock() - start)
    return samples


def train_bench_model(bars: pd.DataFrame, models_dir: Path) -> Path:
    return PPOTrainer(BENCH_MODEL).fit(bars, model_name="bench", models_dir=models_dir)


def stages(loader: PPOModelLoader, records: list[dict], n: int) -> dict[str, float]:
    """p50 (µs) of each stage of the serving path, run alone on the same window."""
    spec, features = loader.spec, loader.spec.features
    frame = window_frame(records, features)
    scaled_rows = transform_features(frame, spec).to_numpy()[-loader.lookback:]
    obs = torch.zeros(1, loader.lookback * len(features) + 4)
    parts = {
        "window_frame": lambda: window_frame(records, features),
        "transform_features": lambda: transform_features(window_frame(records, features), spec),
        "scaler_transform": lambda: loader.scaler.transform(scaled_rows),
        "policy": lambda: loader.agent.policy(obs),
    }
    return {name: round(float(np.percentile(time_calls(call, n), 50)) * 1e6, 1)
            for name, call in parts.items()}


def in_process(loader: PPOModelLoader, frame: pd.DataFrame, calls: int) -> dict[str, Any]:
    records = frame.to_dict("records")
    result = {"window_rows": len(frame), "calls": calls,
              "records": percentiles_ms(time_calls(lambda: loader.predict(records), calls))}
    for name, form in (("dataframe", frame), ("array", frame.to_numpy())):
        result[name] = percentiles_ms(time_calls(lambda f=form: loader.predict(f), calls // 4))
    result["stage_p50_us"] = stages(loader, records, calls // 4)
    return result


def profile_top(loader: PPOModelLoader, records: list[dict], n: int = 500) -> list[str]:
    profiler = cProfile.Profile()
    profiler.runcall(lambda: [loader.predict(records) for _ in range(n)])
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(15)
    return [line for line in out.getvalue().splitlines() if line.strip()][-16:]


# ------------------------------------------------------------------------------ HTTP


def start_server(model_dir: Path, threads: int, log: Any) -> tuple[subprocess.Popen, int]:
    """``Api_Loader.py`` on a free port; returns (process, port) once it listens. Its
    stderr goes to ``log`` (waitress warns on every request that waits for a thread)."""
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "Api_Loader.py"), "--model-dir", str(model_dir),
         "--port", "0", "--threads", str(threads)],
        stdout=subprocess.PIPE, stderr=log, text=True, cwd=ROOT)
    line = process.stdout.readline()  # printed once the socket is bound
    found = re.search(r":(\d+)\s", line)
    if not found:
        process.kill()
        log.seek(0)
        raise RuntimeError(f"the server did not start (exit {process.wait()}): "
                           f"{log.read()[-2000:]}")
    return process, int(found.group(1))


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (Linux /proc), else None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def client_loop(port: int, bodies: list[bytes | None], seconds: float,
                barrier: threading.Barrier, out: list[dict[str, Any]]) -> None:
    """One keep-alive connection sending ``bodies`` in turn (None: ``GET /health``)
    until the time is up."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json"}
    latencies, errors, i = [], 0, 0
    barrier.wait()
    deadline = time.perf_counter() + seconds
    while (start := time.perf_counter()) < deadline:
        body = bodies[i % len(bodies)]
        if body is None:
            conn.request("GET", "/health")
        else:
            conn.request("POST", "/predict", body, headers)
        response = conn.getresponse()
        response.read()
        latencies.append(time.perf_counter() - start)
        errors += response.status != 200
        i += 1
    conn.close()
    out.append({"latencies": latencies, "errors": errors})


def load_test(server: subprocess.Popen, port: int, bodies_per_client: list[list[bytes | None]],
              seconds: float) -> dict[str, Any]:
    barrier, out = threading.Barrier(len(bodies_per_client) + 1), []
    threads = [threading.Thread(target=client_loop, args=(port, bodies, seconds, barrier, out))
               for bodies in bodies_per_client]
    for thread in threads:
        thread.start()
    barrier.wait()
    started, cpu_before = time.perf_counter(), cpu_seconds(server.pid)
    for thread in threads:
        thread.join()
    elapsed, cpu_after = time.perf_counter() - started, cpu_seconds(server.pid)
    latencies = [x for result in out for x in result["latencies"]]
    result = {"requests": len(latencies), "seconds": round(elapsed, 2),
              "requests_per_s": round(len(latencies) / elapsed, 1),
              "non_200": sum(result["errors"] for result in out), **percentiles_ms(latencies)}
    if cpu_before is not None and cpu_after is not None and latencies:
        result["server_cpu_ms_per_request"] = round((cpu_after - cpu_before) * 1e3
                                                    / len(latencies), 3)
    return result


def http_bench(model_dir: Path, frame: pd.DataFrame, bars: list[dict], args: Any) -> dict:
    with tempfile.TemporaryFile("w+") as log:
        server, port = start_server(model_dir, args.server_threads, log)
        try:
            return http_phases(server, port, frame, bars, args)
        finally:
            server.terminate()
            server.wait(timeout=10)


def http_phases(server: subprocess.Popen, port: int, frame: pd.DataFrame, bars: list[dict],
                args: Any) -> dict[str, Any]:
    clients, seconds = args.clients, args.seconds
    window = [json.dumps({"window": frame.to_dict("records")}).encode()]
    streams = [[json.dumps({"features": bar, "stream_id": f"bench-{c}"}).encode()
                for bar in bars] for c in range(clients)]
    result = {"server_threads": args.server_threads, "clients": clients,
              "health": load_test(server, port, [[None]] * clients, seconds),
              "window": load_test(server, port, [window] * clients, seconds)}
    load_test(server, port, streams, 0.5)  # warm the streams up: every later bar predicts
    result["stream_bar"] = load_test(server, port, streams, seconds)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, help="default: train a bench model")
    parser.add_argument("--csv", type=Path, default=ROOT / "sample.csv")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--server-threads", type=int, default=8)
    parser.add_argument("--no-http", action="store_true")
    parser.add_argument("--profile", action="store_true",
                        help="add cProfile's top functions of 500 predictions")
    args = parser.parse_args()
    bars = load_bars(args.csv)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model_dir or train_bench_model(bars.iloc[:1500], Path(tmp))
        loader = load_model(model_dir)
        features = list(loader.spec.features)
        frame = bars[features].iloc[2000:2000 + loader.window_size]
        result: dict[str, Any] = {
            "bench": "predict_latency",
            "model": {"lookback": loader.lookback, "features": len(features),
                      "window_rows": loader.window_size, **loader.config["model_params"]},
            "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                        "python": platform.python_version(), "torch": torch.__version__,
                        "pandas": pd.__version__},
            "goals": {"predict_p50_ms": 1.0, "predict_p99_ms": 5.0, "http_requests_per_s": 1000},
            "predict": in_process(loader, frame, args.calls)}
        if args.profile:
            result["predict_profile"] = profile_top(loader, frame.to_dict("records"))
        if not args.no_http:
            keys = features if "Close" in features else [*features, "Close"]
            stream_bars = bars[keys].iloc[2000:2400].to_dict("records")
            result["http"] = http_bench(Path(model_dir), frame, stream_bars, args)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
