"""Serving speed of a PPO model, this code against a baseline commit, interleaved.
Prints one JSON object.

The baseline is the code before issue 13's hot path (``--baseline``, default
BASELINE_COMMIT), unpacked from git into a temporary folder; both sides serve the same
model, windows and clients, and every measurement alternates between them over
``--rounds`` rounds (the machine is shared: a side measured alone would carry whatever
else ran then). Medians over the rounds are reported, each round's numbers too.

1. ``predict``: p50 / p99 / mean of ``loader.predict`` on a realistic window
   (``window_size`` consecutive bars of sample.csv as a list of dicts, the form the API
   hands over from JSON; also as rows of numbers and as a DataFrame), each side in a
   fresh process (``bench/predict_worker.py``), torch on one thread as the server runs
   it. Goal: p50 <= 0.3 ms.
2. HTTP: each side's ``python Api_Loader.py`` (waitress) in a subprocess on a free port,
   and the bare app: this code's waitress set-up (``web.serving``: threads,
   ``send_bytes``) around a WSGI app that does nothing (``bench/predict_worker.py
   bare-server``: the ceiling). Ours answers ``POST /predict`` through its WSGI fast
   path (``web/predict_wsgi.py``), the baseline through Flask. ``--clients`` threads, each
   with one keep-alive ``http.client`` connection, send requests for ``--seconds``:
   the window body to the bare app, ``GET /health`` (Flask and our request hooks, no
   work), ``POST /predict`` with a full window, with one bar per request to the
   client's own stream (warmed up first), and (this code only) a batch of ``--batch``
   windows per request, read as one stack, and the same batch read window by window
   (its first window one row longer: windows of two lengths take that path).
   Requests/s, latency p50/p99, non-200 count and the server process's CPU time per
   request (Linux). Goals: window >= 1,000 requests/s and >= 50 % of the bare app's;
   batch >= 5,000 predictions/s. The clients run on the same machine and take part of
   its CPU.
3. Equality: the same windows and stream bars sent to both servers get the same
   actions, and probabilities and values to float32 rounding (the policy's numpy forward
   sums in another order than torch; the count of replies identical float for float is
   printed too); a batch's answers against single requests' (equal actions;
   probabilities to float32 rounding: batched matrix products round the last bit
   differently).

Without ``--model-dir`` a model is trained for the bench in a temporary folder: the
default network (lookback 30, 2 x 64 tanh MLP) on a smoke budget (the weights' quality
does not change the cost of a prediction).

Usage: python bench/predict_latency.py [--model-dir Models/PPO_x] [--calls 2000]
           [--rounds 3] [--clients 4] [--seconds 3] [--batch 100] [--server-threads 1]
           [--baseline REV] [--no-http]
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from contextlib import ExitStack, contextmanager
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
from NetworkConfigs.PPOTrainer import PPOTrainer  # noqa: E402
from Utilities.data_utils import load_bars  # noqa: E402
from web.serving import DEFAULT_THREADS  # noqa: E402

BENCH_MODEL = deep_merge(SMOKE, {"model_params": {"lookback_window": 30},
                                 "train_params": {"total_timesteps": 2048}})
# The last commit before issue 13's /predict hot path: the "before" of every number.
BASELINE_COMMIT = "4428e43"
GOALS = {"predict_p50_ms": 0.3, "http_requests_per_s": 1000, "http_share_of_bare": 0.5,
         "batch_predictions_per_s": 5000}


def percentiles_ms(seconds: list[float] | np.ndarray) -> dict[str, float]:
    ms = np.asarray(seconds) * 1e3
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3),
            "p99_ms": round(float(np.percentile(ms, 99)), 3),
            "mean_ms": round(float(ms.mean()), 3)}


def train_bench_model(bars: pd.DataFrame, models_dir: Path) -> Path:
    return PPOTrainer(BENCH_MODEL).fit(bars, model_name="bench", models_dir=models_dir)


def unpack_baseline(rev: str, into: Path) -> Path:
    """The tree of commit ``rev`` (tracked files only) under ``into``."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", rev],
                             check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def median_of(rounds: list[dict[str, Any]], *keys: str) -> float:
    values = []
    for result in rounds:
        for key in keys:
            result = result[key]
        values.append(result)
    return round(statistics.median(values), 3)


# ------------------------------------------------------------------------ in-process


def worker(root: Path, model_dir: Path, calls: int) -> dict[str, Any]:
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "predict_worker.py"),
                          "latency", "--root", str(root), "--model-dir", str(model_dir),
                          "--calls", str(calls)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def in_process(sides: dict[str, Path], model_dir: Path, calls: int,
               rounds: int) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
    for _ in range(rounds):
        for side, root in sides.items():
            runs[side].append(worker(root, model_dir, calls))
    result: dict[str, Any] = {"calls": calls, "rounds": rounds}
    for side, side_runs in runs.items():
        result[side] = {form: {"p50_ms": median_of(side_runs, form, "p50_ms"),
                               "p99_ms": median_of(side_runs, form, "p99_ms")}
                        for form in side_runs[0]}
        result[side]["records_p50_ms_by_round"] = [r["records"]["p50_ms"] for r in side_runs]
    result["speedup_p50"] = round(result["baseline"]["records"]["p50_ms"]
                                  / result["current"]["records"]["p50_ms"], 2)
    return result


# ------------------------------------------------------------------------------ HTTP


def api_command(root: Path, model_dir: Path, threads: int) -> list[str]:
    """``Api_Loader.py`` of ``root`` on a free port."""
    return [sys.executable, str(root / "Api_Loader.py"), "--model-dir", str(model_dir),
            "--port", "0", "--threads", str(threads)]


def bare_command(threads: int) -> list[str]:
    """The do-nothing WSGI app on the same waitress set-up."""
    return [sys.executable, str(ROOT / "bench" / "predict_worker.py"), "bare-server",
            "--threads", str(threads)]


@contextmanager
def server(command: list[str], cwd: Path):
    """A server process: yields (process, port) once it listens. Its stderr goes to a
    temporary file (waitress warns on every request that waits for a thread)."""
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True,
                                   cwd=cwd)
        line = process.stdout.readline()  # printed once the socket is bound
        found = re.search(r":(\d+)\s", line)
        try:
            if not found:
                log.seek(0)
                raise RuntimeError(f"{command[1]} did not start: {log.read()[-2000:]}")
            yield process, int(found.group(1))
        finally:
            process.terminate()
            process.wait(timeout=10)


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (Linux /proc), else None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def request(conn: http.client.HTTPConnection, body: bytes | None) -> tuple[int, bytes]:
    if body is None:
        conn.request("GET", "/health")
    else:
        conn.request("POST", "/predict", body, {"Content-Type": "application/json"})
    response = conn.getresponse()
    return response.status, response.read()


def client_loop(port: int, bodies: list[bytes | None], seconds: float,
                barrier: threading.Barrier, out: list[dict[str, Any]]) -> None:
    """One keep-alive connection sending ``bodies`` in turn (None: ``GET /health``)
    until the time is up."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    latencies, errors, i = [], 0, 0
    barrier.wait()
    deadline = time.perf_counter() + seconds
    while (start := time.perf_counter()) < deadline:
        status, _ = request(conn, bodies[i % len(bodies)])
        latencies.append(time.perf_counter() - start)
        errors += status != 200
        i += 1
    conn.close()
    out.append({"latencies": latencies, "errors": errors})


def load_test(process: subprocess.Popen, port: int,
              bodies_per_client: list[list[bytes | None]], seconds: float) -> dict[str, Any]:
    barrier, out = threading.Barrier(len(bodies_per_client) + 1), []
    threads = [threading.Thread(target=client_loop, args=(port, bodies, seconds, barrier, out))
               for bodies in bodies_per_client]
    for thread in threads:
        thread.start()
    barrier.wait()
    started, cpu_before = time.perf_counter(), cpu_seconds(process.pid)
    for thread in threads:
        thread.join()
    elapsed, cpu_after = time.perf_counter() - started, cpu_seconds(process.pid)
    latencies = [x for result in out for x in result["latencies"]]
    result = {"requests": len(latencies), "requests_per_s": round(len(latencies) / elapsed, 1),
              "non_200": sum(result["errors"] for result in out), **percentiles_ms(latencies)}
    if cpu_before is not None and cpu_after is not None and latencies:
        result["server_cpu_ms_per_request"] = round((cpu_after - cpu_before) * 1e3
                                                    / len(latencies), 3)
    return result


def http_bodies(bars: pd.DataFrame, features: list[str], size: int, clients: int,
                batch: int) -> dict[str, Any]:
    window = bars[features].iloc[2000:2000 + size].to_dict("records")
    keys = features if "Close" in features else [*features, "Close"]
    stream_bars = bars[keys].iloc[2000:2400].to_dict("records")
    windows = [bars[features].iloc[2000 + i:2000 + i + size].to_dict("records")
               for i in range(batch)]
    # The same batch, its first window one (older, unused) row longer: windows of two
    # lengths are read one by one, the path every batch took before the stack.
    uneven = [bars[features].iloc[1999:2000 + size].to_dict("records"), *windows[1:]]
    return {"window": json.dumps({"window": window}).encode(),
            "streams": [[json.dumps({"features": bar, "stream_id": f"bench-{c}"}).encode()
                         for bar in stream_bars] for c in range(clients)],
            "batch": json.dumps({"batch": [{"window": w} for w in windows]}).encode(),
            "batch_one_by_one": json.dumps({"batch": [{"window": w} for w in uneven]}).encode(),
            "windows": windows}


def http_rounds(servers: dict[str, tuple[subprocess.Popen, int]], bodies: dict[str, Any],
                args: Any) -> dict[str, Any]:
    """Every phase on both servers, alternating, ``args.rounds`` times."""
    clients, seconds = args.clients, args.seconds
    for side in ("baseline", "current"):  # warm the streams up: every later bar predicts
        load_test(*servers[side], bodies["streams"], 0.5)
    phases = [("bare_app", "bare", [[bodies["window"]]] * clients),
              ("health", "current", [[None]] * clients),
              ("window", "baseline", [[bodies["window"]]] * clients),
              ("window", "current", [[bodies["window"]]] * clients),
              ("stream_bar", "baseline", bodies["streams"]),
              ("stream_bar", "current", bodies["streams"]),
              ("batch_one_by_one", "current", [[bodies["batch_one_by_one"]]] * clients),
              ("batch", "current", [[bodies["batch"]]] * clients)]
    runs: dict[str, list[dict[str, Any]]] = {}
    for _ in range(args.rounds):
        for phase, side, per_client in phases:
            runs.setdefault(f"{phase}.{side}", []).append(
                load_test(*servers[side], per_client, seconds))
    result: dict[str, Any] = {"server_threads": args.server_threads, "clients": clients,
                              "seconds_per_phase": seconds, "rounds": args.rounds}
    for name, phase_runs in runs.items():
        result[name] = {key: median_of(phase_runs, key) for key in phase_runs[0]}
        result[name]["requests_per_s_by_round"] = [r["requests_per_s"] for r in phase_runs]
    for side in ("baseline", "current"):  # each round's share, against that round's ceiling
        for ceiling, key in (("bare_app.bare", "share_of_bare"),
                             ("health.current", "share_of_health")):
            shares = [w["requests_per_s"] / b["requests_per_s"]
                      for w, b in zip(runs[f"window.{side}"], runs[ceiling], strict=True)]
            result[f"window.{side}"][key] = round(statistics.median(shares), 3)
    for phase in ("batch_one_by_one.current", "batch.current"):
        result[phase]["predictions_per_s"] = round(result[phase]["requests_per_s"] * args.batch, 1)
        result[phase]["windows_per_request"] = args.batch
    result["batch_stack_speedup"] = round(result["batch.current"]["requests_per_s"]
                                          / result["batch_one_by_one.current"]["requests_per_s"], 2)
    result["window_speedup"] = round(result["window.current"]["requests_per_s"]
                                     / result["window.baseline"]["requests_per_s"], 2)
    return result


def reply_gap(a: dict[str, Any], b: dict[str, Any]) -> float:
    """The largest difference between two replies' probabilities and values (0 for two
    equal replies without them: a stream still filling its window); inf where they
    differ otherwise."""
    if "probabilities" not in a or "probabilities" not in b:
        return 0.0 if a == b else float("inf")
    gaps = [abs(a["probabilities"][k] - b["probabilities"][k]) for k in a["probabilities"]]
    return max(*gaps, abs(a["value_estimate"] - b["value_estimate"]))


def equality(servers: dict[str, tuple[subprocess.Popen, int]], bodies: dict[str, Any],
             stream_bars: list[bytes]) -> dict[str, Any]:
    """Both servers' replies to the same windows and the same stream, and the current
    server's batch answers against its single answers."""
    conns = {side: http.client.HTTPConnection("127.0.0.1", servers[side][1], timeout=60)
             for side in ("baseline", "current")}

    def replies(side: str, payloads: list[bytes]) -> list[Any]:
        return [json.loads(request(conns[side], body)[1]) for body in payloads]

    singles = [json.dumps({"window": w}).encode() for w in bodies["windows"]]
    stream = [body.replace(b'"bench-0"', b'"equality"') for body in stream_bars]
    answers = {side: replies(side, singles + stream) for side in conns}
    pairs = list(zip(answers["baseline"], answers["current"], strict=True))
    # The policy's numpy forward (NetworkConfigs/numpy_policy.py) sums in another order
    # than torch: equal to float32 rounding, the chosen action the same.
    served_gaps = [reply_gap(a, b) for a, b in pairs]
    batch = replies("current", [bodies["batch"]])[0]["predictions"]
    single = answers["current"][:len(singles)]
    gaps = [abs(b["probabilities"][k] - s["probabilities"][k])
            for b, s in zip(batch, single, strict=True) for k in s["probabilities"]]
    return {"windows_and_stream_bars": len(singles) + len(stream),
            "identical_replies_baseline_vs_current": sum(a == b for a, b in pairs),
            "same_action_baseline_vs_current": sum(a.get("action_name") == b.get("action_name")
                                                   for a, b in pairs),
            "max_gap_baseline_vs_current": float(max(served_gaps)),
            "batch_vs_single_same_actions": sum(b["action_name"] == s["action_name"]
                                                for b, s in zip(batch, single, strict=True)),
            "batch_vs_single_max_probability_gap": float(max(gaps))}


def http_bench(sides: dict[str, Path], model_dir: Path, bars: pd.DataFrame,
               features: list[str], size: int, args: Any) -> dict[str, Any]:
    bodies = http_bodies(bars, features, size, args.clients, args.batch)
    with ExitStack() as stack:
        servers = {side: stack.enter_context(server(
                       api_command(root, model_dir, args.server_threads), root))
                   for side, root in sides.items()}
        servers["bare"] = stack.enter_context(server(bare_command(args.server_threads), ROOT))
        result = http_rounds(servers, bodies, args)
        result["equality"] = equality(servers, bodies, bodies["streams"][0][:60])
    return result


def goals_met(result: dict[str, Any]) -> dict[str, bool]:
    met = {"predict_p50_ms": result["predict"]["current"]["records"]["p50_ms"]
           <= GOALS["predict_p50_ms"]}
    if "http" in result:
        window, batch = result["http"]["window.current"], result["http"]["batch.current"]
        met |= {"http_requests_per_s": window["requests_per_s"] >= GOALS["http_requests_per_s"],
                "http_share_of_bare": window["share_of_bare"] >= GOALS["http_share_of_bare"],
                "batch_predictions_per_s":
                    batch["predictions_per_s"] >= GOALS["batch_predictions_per_s"]}
    return met


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, help="default: train a bench model")
    parser.add_argument("--csv", type=Path, default=ROOT / "sample.csv")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--batch", type=int, default=100, help="windows per batch request")
    parser.add_argument("--server-threads", type=int, default=DEFAULT_THREADS,
                        help="both servers' request threads (default: the model server's)")
    parser.add_argument("--baseline", default=BASELINE_COMMIT,
                        help=f"git revision to compare with (default {BASELINE_COMMIT})")
    parser.add_argument("--no-http", action="store_true")
    args = parser.parse_args()
    bars = load_bars(args.csv)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = (args.model_dir or train_bench_model(bars.iloc[:1500], Path(tmp))).resolve()
        sides = {"baseline": unpack_baseline(args.baseline, Path(tmp) / "baseline"),
                 "current": ROOT}
        loader = load_model(model_dir)
        features = list(loader.spec.features)
        result: dict[str, Any] = {
            "bench": "predict_latency", "baseline_commit": args.baseline,
            "model": {"lookback": loader.lookback, "features": len(features),
                      "window_rows": loader.window_size, **loader.config["model_params"]},
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "torch": torch.__version__, "pandas": pd.__version__},
            "goals": GOALS,
            "predict": in_process(sides, model_dir, args.calls, args.rounds)}
        if not args.no_http:
            result["http"] = http_bench(sides, model_dir, bars, features, loader.window_size,
                                        args)
        result["goals_met"] = goals_met(result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
