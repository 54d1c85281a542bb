"""A run's metric points as a download: every stored point, read page by page and
written as it is read, so a run of a million points never sits in memory (CSV or JSON).

The format is long: one row per point, ``key,step,value,wall_time``, series by series
(keys sorted), each in (step, write) order, as the store reads them. A NaN is an empty
cell in CSV and ``null`` in JSON. Values are written with ``repr`` (shortest exact), so a
download parses back to the very floats that were logged.

Each page is its own short read (keyset by step on the (series, step) index): a long
download holds no transaction open, and points a live run adds meanwhile past the last
step read are included. A step logged twice keeps both points, in write order.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session

from Utilities.run_store import RunStore
from Utilities.run_store_schema import MetricPoint

PAGE = 10_000
CSV_COLUMNS = ("key", "step", "value", "wall_time")
_P = MetricPoint.__table__.c


def series_pages(store: RunStore, series_id: int, page: int | None = None,
                 ) -> Iterator[Sequence[Sequence[Any]]]:
    """(step, value, wall_time) rows of one series, ``page`` (default :data:`PAGE`) at a
    time (a page ending inside a repeated step is completed with the rest of that step)."""
    page = page or PAGE
    after: int | None = None
    while True:
        query = select(_P.step, _P.value, _P.wall_time).where(_P.series_id == series_id)
        if after is not None:
            query = query.where(_P.step > after)
        with Session(store.engine) as session:
            rows = session.execute(query.order_by(_P.step, _P.id).limit(page)).all()
            if len(rows) == page:  # the last step may go on past the page: read it whole
                last = rows[-1][0]
                cut = len(rows)
                while cut and rows[cut - 1][0] == last:
                    cut -= 1
                rows = rows[:cut] + session.execute(
                    select(_P.step, _P.value, _P.wall_time).where(
                        _P.series_id == series_id, _P.step == last).order_by(_P.id)).all()
        if not rows:
            return
        yield rows
        if len(rows) < page:
            return
        after = rows[-1][0]


def run_series(store: RunStore, run_id: str) -> list[tuple[str, int, int]]:
    """(key, series id, points) of each of a run's series, by key; RunNotFound if none."""
    store.get_run(run_id)  # RunNotFound for an unknown run, not an empty file
    stats = store.series_statistics([run_id]).get(run_id, {})
    return [(key, int(st["id"]), int(st["points"])) for key, st in sorted(stats.items())]


def csv_chunks(store: RunStore, series: list[tuple[str, int, int]],
               page: int | None = None) -> Iterator[str]:
    """The points of a run's ``series`` (:func:`run_series`, read before the download
    starts, so an unknown run is an error reply, not an empty file) as CSV text: the
    header, then one chunk per page read."""
    yield ",".join(CSV_COLUMNS) + "\r\n"
    for key, series_id, _ in series:
        for rows in series_pages(store, series_id, page):
            out = io.StringIO()
            writer = csv.writer(out)
            # csv writes a float as repr (exact) and None (NaN) as an empty cell
            writer.writerows([(key, step, value, wall) for step, value, wall in rows])
            yield out.getvalue()


def json_chunks(store: RunStore, series: list[tuple[str, int, int]], header: dict[str, Any],
                page: int | None = None) -> Iterator[bytes]:
    """The points of a run's ``series`` as one JSON object: ``header``'s fields, then
    ``"series": {key: [{"step", "value", "wall_time"}, …]}`` (the metrics API's shape)."""
    head = orjson.dumps({**header, "series": {}})
    yield head[:-2]  # the header without its closing "}}": the series follow
    for number, (key, series_id, _) in enumerate(series):
        yield (b"," if number else b"") + orjson.dumps(key) + b":["
        first = True
        for rows in series_pages(store, series_id, page):
            body = orjson.dumps([{"step": step, "value": value, "wall_time": wall}
                                 for step, value, wall in rows])[1:-1]
            yield body if first else b"," + body
            first = False
        yield b"]"
    yield b"}}"
