"""Reading a server-sent-event reply of the Flask test client, message by message."""

from __future__ import annotations

import time
from collections.abc import Iterator

import orjson


class Stream:
    """An open stream read message by message (the test client streams the reply)."""

    def __init__(self, client, url: str, **headers: str) -> None:
        self.response = client.get(url, headers=headers, buffered=False)
        self.status = self.response.status_code
        self._chunks: Iterator[bytes] = iter(self.response.response)
        self._buffer = b""

    def messages(self, deadline: float = 10.0) -> Iterator[dict]:
        """Parsed messages ({"event", "id", "data"} or {"comment"}) until the stream ends
        or ``deadline`` seconds pass (the server's keep-alives bound each wait)."""
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            while b"\n\n" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\n\n", 1)
                yield parse(raw)
            try:
                self._buffer += next(self._chunks)
            except StopIteration:
                return
        raise AssertionError("the stream sent nothing expected in time")

    def collect(self, count: int, types: set[str] | None = None) -> list[dict]:
        """The next ``count`` messages of the given types (skipping keep-alives)."""
        found = []
        for message in self.messages():
            if "event" in message and (types is None or message["event"] in types):
                found.append(message)
                if len(found) == count:
                    return found
        raise AssertionError(f"the stream ended after {len(found)} of {count} messages")

    def close(self) -> None:
        self.response.close()


def parse(raw: bytes) -> dict:
    message: dict = {}
    for line in raw.decode().split("\n"):
        field, _, value = line.partition(": ")
        if field == "":
            message["comment"] = value
        elif field == "data":
            message["data"] = orjson.loads(value)
        else:
            message[field] = value
    return message
