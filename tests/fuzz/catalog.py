"""What a request is made of: the :class:`Catalog` of valid values the fixtures hold,
and a :class:`Case` (one request, described for the report)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from werkzeug.test import EnvironBuilder

from tests.fuzz import schemas
from tests.fuzz.schemas import Bars, OpenApi

WRITES = ("POST", "PUT", "PATCH", "DELETE")
OTHER_SITE = "https://evil.example"
REBOUND_HOST = "evil.example:5000"  # DNS rebinding: the attacker's name, our address


@dataclass
class Catalog:
    """What the fixtures hold: the valid values of path parameters and forms."""

    run_ids: list[str]
    model_dirs: list[str]
    result_ids: list[str]
    csv_names: list[str]
    static_files: list[str]
    files: list[str]                      # a backtest result's downloads
    period: tuple[str, str]               # a valid start/end in the data folder's CSV
    bars: Bars
    csv_text: str                         # a valid small CSV, for uploads
    openapi: dict[str, OpenApi]           # "": the hosted model's; else by folder name
    model_types: list[str]
    statuses: list[str]
    metric_keys: list[str] = field(default_factory=lambda: ["episode/reward", "loss"])
    # The route that still gets the one costly upload (10,000 columns: seconds to refuse;
    # both upload routes read files with the same datafiles.save_upload).
    heavy_left: set[str] = field(default_factory=lambda: {"backtests.submit"})

    def learn(self, location: str) -> None:
        """Ids a reply revealed (a started run, a saved backtest) become valid ids."""
        for pattern, pool in ((r"/runs/([^/?]+)$", self.run_ids),
                              (r"/backtest/([^/?]+)$", self.result_ids)):
            found = re.search(pattern, location)
            if found and found.group(1) not in pool and len(pool) < 50:
                pool.append(found.group(1))

    def valid_for(self, arg: str) -> list[str]:
        return {"run_id": self.run_ids, "dir_name": self.model_dirs,
                "result_id": self.result_ids, "name": self.files,
                "stream_id": list(schemas.STREAM_IDS),
                "filename": self.static_files}.get(arg, [])


@dataclass
class Case:
    """One request, and what it was generated as (for the report)."""

    method: str
    path: str                     # percent-encoded
    rule: str
    query: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    base_url: str = "http://localhost"
    body: bytes | None = None
    content_type: str | None = None
    profile: str = "plain"        # plain, cross-site, rebinding, ...

    def builder(self) -> EnvironBuilder:
        return EnvironBuilder(path=self.path, base_url=self.base_url, method=self.method,
                              query_string=self.query or None, headers=self.headers,
                              data=self.body, content_type=self.content_type)

    def describe(self, limit: int = 300) -> dict[str, Any]:
        url = self.path + (f"?{self.query}" if self.query else "")
        body = None if self.body is None else \
            f"{self.body[:limit]!r}{'...' if len(self.body) > limit else ''} " \
            f"({len(self.body):,} bytes)"
        return {"method": self.method, "url": url[:limit], "host": self.base_url,
                "headers": self.headers, "content_type": self.content_type, "body": body}
