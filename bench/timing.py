"""What the benches share for timing a block: wall and process CPU seconds (CPU time is
steadier on a shared machine)."""

from __future__ import annotations

import time


class Clock:
    """``with Clock() as c:`` … then ``c.wall`` and ``c.cpu`` are the block's seconds."""

    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu
