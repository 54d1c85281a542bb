"""README.md's shell commands work when pasted: every ```bash block is run, in README order,
in a copy of the repository, as a newcomer would after `make run`.

Conventions (README.md, "Set-up and targets", documents them for writers): an HTML comment
on the line just above a block changes how it runs.

- no marker: the block is one bash script (`set -eo pipefail`) that must exit 0;
- ``<!-- readme-test: background URL -->``: each command is started and left running until
  the end of the test, once ``URL`` answers 200 (a server: `make run`, `Api_Loader.py`);
- ``<!-- readme-test: stop-after N -->``: each command runs at most N seconds; one still
  running then counts as working and is stopped with SIGTERM (trainers save and exit);
- ``<!-- readme-test: skip REASON -->``: not run (keep these rare).

What the copy changes, so the run is cheap and leaves the developer's files alone: its
``.venv`` links to the running interpreter's environment with fresh install stamps (make
never reinstalls), ``Models/PPO_demo`` is a two-iteration PPO model trained by the README's
own CLI before `make run` (so `make run` skips the demo training), the ports 5000 and 8001
are moved to free ones (also in the commands' text), and ``curl`` fails on an HTTP error
(``--fail-with-body``) so a 4xx/5xx reply fails its block.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
TIMINGS = ROOT / "test-artifacts" / "readme_commands.json"
FENCE = re.compile(r"^```\s*(\w*)\s*$")
MARKER = re.compile(r"^<!--\s*readme-test:\s*(\S+)\s*(.*?)\s*-->\s*$")
MODES = {"background", "stop-after", "skip"}
SHELLS = {"bash", "sh", "shell"}
PORTS = (5000, 8001)  # the README's dashboard and Api_Loader ports
PORT_IN_TEXT = re.compile(r"(?<![\d.])(" + "|".join(map(str, PORTS)) + r")(?!\d)")
# Each script starts with this: HTTP errors fail the block (curl -s alone exits 0 on a 503).
PRELUDE = 'set -eo pipefail\ncurl() { command curl --fail-with-body "$@"; }\n'
BLOCK_TIMEOUT_S = 600
STARTUP_TIMEOUT_S = 300
STOP_GRACE_S = 180
# Two PPO iterations on sample.csv: the copy's Models/PPO_demo in a few seconds.
TINY_PPO = {"train_params": {"total_timesteps": 512, "n_envs": 2, "n_steps": 128,
                             "batch_size": 128, "eval_every": 1},
            "model_params": {"lookback_window": 10, "hidden_dim": 32}}
# Variables that would point the copy at the developer's store, models or server.
CLEARED_ENV = ("DATABASE_URL", "MODELS_DIR", "DATA_DIR", "BACKTESTS_DIR", "SECRET_KEY", "AUTH",
               "ALLOWED_HOSTS", "HOST", "PORT", "ARGS", "MAKEFLAGS", "MAKELEVEL", "MFLAGS")


@dataclass(frozen=True)
class Block:
    """One fenced shell block of a markdown file."""

    line: int  # the opening fence's line number (1-based), for messages
    mode: str  # "run", "background", "stop-after" or "skip"
    argument: str  # the URL, the seconds or the reason
    text: str


class BlockFailed(AssertionError):
    pass


def shell_blocks(markdown: str) -> list[Block]:
    """The shell blocks of ``markdown`` with their markers. An unknown marker, a marker
    with no block under it, or a skip without a reason is an error (no silent skips)."""
    blocks: list[Block] = []
    lines = markdown.splitlines()
    marker: tuple[int, str, str] | None = None
    index = 0
    while index < len(lines):
        line = lines[index]
        found = MARKER.match(line)
        fence = FENCE.match(line)
        if found:
            mode, argument = found.groups()
            if mode not in MODES:
                raise ValueError(f"README line {index + 1}: unknown readme-test mode {mode!r}; "
                                 f"use one of {sorted(MODES)}")
            if mode in ("skip", "background") and not argument:
                raise ValueError(f"README line {index + 1}: readme-test {mode} needs "
                                 f"{'a reason' if mode == 'skip' else 'a URL'}")
            if mode == "stop-after" and not argument.isdigit():
                raise ValueError(f"README line {index + 1}: stop-after needs whole seconds")
            marker = (index + 1, mode, argument)
        elif fence:
            end = next((j for j in range(index + 1, len(lines)) if lines[j].startswith("```")),
                       len(lines))
            if fence.group(1) in SHELLS:
                mode, argument = ("run", "") if marker is None else marker[1:]
                blocks.append(Block(index + 1, mode, argument, "\n".join(lines[index + 1:end])))
            elif marker is not None:
                raise ValueError(f"README line {marker[0]}: readme-test marker above a "
                                 f"{fence.group(1) or 'plain'} block")
            marker = None
            index = end
        elif line.strip() and marker is not None:
            raise ValueError(f"README line {marker[0]}: a readme-test marker must be right "
                             "above its block")
        index += 1
    return blocks


def commands(text: str) -> list[str]:
    """The block's commands: continuation lines joined, comment-only and blank lines left
    out (a block run whole keeps them; this is for one-command-at-a-time modes)."""
    result: list[str] = []
    parts: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not parts and (not stripped or stripped.startswith("#")):
            continue
        continued = stripped.endswith("\\")
        parts.append(stripped[:-1].strip() if continued else stripped)
        if not continued:
            result.append(" ".join(parts))
            parts = []
    if parts:
        result.append(" ".join(parts))
    return result


class Runner:
    """Runs blocks in one folder; keeps background servers until :meth:`close`."""

    def __init__(self, cwd: Path, env: dict[str, str], ports: dict[int, int] | None = None,
                 logs: Path | None = None) -> None:
        self.cwd, self.env, self.ports = cwd, env, ports or {}
        self.logs = logs or cwd
        self.background: list[subprocess.Popen] = []
        self.timings: list[dict[str, object]] = []  # README line, command, seconds, outcome
        self._count = 0

    def moved(self, text: str) -> str:
        return PORT_IN_TEXT.sub(lambda m: str(self.ports.get(int(m.group(1)), m.group(1))),
                                text)

    def run(self, block: Block) -> None:
        if block.mode == "skip":
            return
        if block.mode == "run":
            self._timed(block, block.text, self._run_script, block, self.moved(block.text))
            return
        for command in commands(self.moved(block.text)):
            if block.mode == "background":
                self._timed(block, command, self._start_server, block, command,
                            self.moved(block.argument))
            else:
                self._timed(block, command, self._run_for, block, command, int(block.argument))

    def _timed(self, block: Block, shown: str, step: Callable[..., str | None],
               *args: object) -> None:
        started = time.monotonic()
        outcome = "failed"
        try:
            outcome = step(*args) or "ok"
        finally:
            self.timings.append({"line": block.line, "mode": block.mode, "command": shown,
                                 "seconds": round(time.monotonic() - started, 1),
                                 "outcome": outcome})

    def close(self) -> None:
        for process in reversed(self.background):
            _stop(process, grace_s=30)
        self.background.clear()

    # ------------------------------------------------------------------ modes

    def _spawn(self, script: str) -> tuple[subprocess.Popen, Path]:
        self._count += 1
        log = self.logs / f"readme-command-{self._count}.log"
        with log.open("wb") as out:  # the child keeps its own descriptor
            process = subprocess.Popen(["bash", "-c", PRELUDE + script], cwd=self.cwd,
                                       env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                       start_new_session=True)  # its own group: stop all
        return process, log

    def _run_script(self, block: Block, script: str) -> None:
        process, log = self._spawn(script)
        try:
            code = process.wait(timeout=BLOCK_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            _stop(process, grace_s=10)
            raise BlockFailed(_failure(block, script, log, f"still running after "
                                                           f"{BLOCK_TIMEOUT_S} s")) from None
        if code != 0:
            raise BlockFailed(_failure(block, script, log, f"exit status {code}"))

    def _run_for(self, block: Block, command: str, seconds: int) -> str | None:
        process, log = self._spawn(command)
        try:
            code = process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            _stop(process, grace_s=STOP_GRACE_S)  # working so far; let it save and exit
            return "stopped"
        if code != 0:
            raise BlockFailed(_failure(block, command, log, f"exit status {code}"))
        return None

    def _start_server(self, block: Block, command: str, url: str) -> None:
        process, log = self._spawn(command)
        self.background.append(process)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise BlockFailed(_failure(block, command, log,
                                           f"exited ({process.returncode}) before {url} answered"))
            if _answers(url):
                return
            time.sleep(0.5)
        raise BlockFailed(_failure(block, command, log, f"{url} did not answer in "
                                                        f"{STARTUP_TIMEOUT_S} s"))


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _stop(process: subprocess.Popen, grace_s: float) -> None:
    """SIGTERM to the command's whole group (make and its python), SIGKILL after grace."""
    if process.poll() is None:
        _signal_group(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace_s)
    deadline = time.monotonic() + grace_s
    while _group_alive(process.pid) and time.monotonic() < deadline:
        time.sleep(0.2)  # make may be gone while its python child still saves
    _signal_group(process.pid, signal.SIGKILL)
    process.wait()


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _failure(block: Block, command: str, log: Path, what: str) -> str:
    output = log.read_text(errors="replace")[-3000:]
    return f"README.md line {block.line}: {what}\n$ {command}\n{output}"


# ---------------------------------------------------------------- the repository copy


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def copy_repository(target: Path) -> Path:
    """The working tree's files (tracked, or new and not ignored) under ``target/repo``,
    ``../shared`` beside it as in a checkout, and a ``.venv`` of links to this interpreter's
    environment with its own install stamps."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, check=True).stdout.decode()
    repo = target / "repo"
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the working tree is left out
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, repo / name)
    if (ROOT.parent / "shared").is_dir():
        (target / "shared").symlink_to(ROOT.parent / "shared")
    venv = repo / ".venv"
    venv.mkdir()
    for entry in Path(sys.prefix).iterdir():
        if not entry.name.startswith("."):
            (venv / entry.name).symlink_to(entry)
    for stamp in (".runtime", ".dev"):
        (venv / stamp).touch()
    return repo


def newcomer_env(ports: dict[int, int]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CLEARED_ENV}
    env["PORT"] = str(ports[5000])  # `make run` listens there
    return env


# ---------------------------------------------------------------- the machinery's own tests


def test_blocks_and_markers_are_read() -> None:
    markdown = "\n".join([
        "text", "```bash", "echo one", "```",
        "<!-- readme-test: skip needs a GPU -->", "```bash", "nvidia-smi", "```",
        "<!-- readme-test: stop-after 5 -->", "```sh", "train \\", "  --long", "# note", "```",
        "```python", "print('not shell')", "```"])
    blocks = shell_blocks(markdown)
    assert [(b.line, b.mode, b.argument) for b in blocks] == [
        (2, "run", ""), (6, "skip", "needs a GPU"), (10, "stop-after", "5")]
    assert commands(blocks[2].text) == ["train --long"]


@pytest.mark.parametrize("markdown, problem", [
    ("<!-- readme-test: skipp x -->\n```bash\nls\n```", "unknown readme-test mode"),
    ("<!-- readme-test: skip -->\n```bash\nls\n```", "needs a reason"),
    ("<!-- readme-test: stop-after soon -->\n```bash\nls\n```", "whole seconds"),
    ("<!-- readme-test: skip x -->\nprose\n```bash\nls\n```", "right above its block"),
])
def test_a_bad_marker_is_an_error(markdown: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        shell_blocks(markdown)


def test_the_readme_skips_little() -> None:
    blocks = shell_blocks(README.read_text())
    skipped = [b for b in blocks if b.mode == "skip"]
    assert len(blocks) >= 5
    assert len(skipped) <= 1, [b.line for b in skipped]  # only `make test` (it runs us)


@pytest.fixture()
def runner(tmp_path: Path) -> Iterator[Runner]:
    env = {k: v for k, v in os.environ.items() if k not in CLEARED_ENV}
    runner = Runner(tmp_path, env, ports={5000: free_port()})
    yield runner
    runner.close()


@pytest.mark.parametrize("text, mode, argument", [
    ("true\nfalse\necho never", "run", ""),  # set -e: a failing line fails the block
    ("python3 -c 'import sys; sys.exit(2)' | cat", "run", ""),  # pipefail
    ("curl -s http://127.0.0.1:5000/nothing-listens", "run", ""),  # moved to a free port
    ("exit 3", "stop-after", "5"),
    ("echo not a server", "background", "http://127.0.0.1:5000/"),
])
def test_a_broken_command_fails_its_block(runner: Runner, text: str, mode: str,
                                          argument: str) -> None:
    with pytest.raises(BlockFailed, match=r"README\.md line 7"):
        runner.run(Block(7, mode, argument, text))


def test_a_command_still_working_is_stopped_and_passes(runner: Runner, tmp_path: Path) -> None:
    started = time.monotonic()
    runner.run(Block(1, "stop-after", "1",
                     "trap 'echo stopped > stopped.txt; exit 143' TERM; sleep 30 & wait"))
    assert time.monotonic() - started < 20
    assert (tmp_path / "stopped.txt").read_text() == "stopped\n"  # SIGTERM, not SIGKILL


def test_a_server_is_probed_and_moved_to_a_free_port(runner: Runner) -> None:
    port = runner.ports[5000]
    runner.run(Block(1, "background", "http://127.0.0.1:5000/",
                     "python3 -m http.server 5000 --bind 127.0.0.1"))
    assert _answers(f"http://127.0.0.1:{port}/")
    runner.run(Block(2, "run", "", "curl -s localhost:5000/ > /dev/null"))
    with pytest.raises(BlockFailed, match="exit status 22"):  # an HTTP error fails curl
        runner.run(Block(3, "run", "", "curl -s localhost:5000/missing"))
    runner.close()
    assert not _answers(f"http://127.0.0.1:{port}/")


# ---------------------------------------------------------------- the README itself


@pytest.mark.slow
@pytest.mark.timeout(1800)  # trainings, two servers, a backtest: ~4 min on an idle 2-core box
def test_readme_commands_work_when_pasted(tmp_path: Path) -> None:
    blocks = shell_blocks(README.read_text())
    repo = copy_repository(tmp_path)
    ports = {port: free_port() for port in PORTS}
    env = newcomer_env(ports)
    seed = subprocess.run(
        [".venv/bin/python", "Utilities/run_training.py", "--csv_path", "sample.csv",
         "--model", "ppo", "--mode", "smoke", "--model_name", "demo", "--no-progress",
         "--training_params", json.dumps(TINY_PPO)],
        cwd=repo, env=env, capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S)
    assert seed.returncode == 0, seed.stderr[-3000:]
    runner = Runner(repo, env, ports, logs=tmp_path)
    try:
        for block in blocks:
            runner.run(block)
    finally:
        runner.close()
        # How long each command took: the README's times can be checked against these.
        TIMINGS.parent.mkdir(parents=True, exist_ok=True)
        TIMINGS.write_text(json.dumps(runner.timings, indent=1))
    assert (repo / "Models" / "XGB_quick").is_dir()  # the quick tour's model was trained
