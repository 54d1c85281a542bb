"""Request bodies: JSON mutated from each route's valid example, forms (urlencoded or
multipart written by hand) and odd files to upload."""

from __future__ import annotations

import random
import re
from typing import Any
from urllib.parse import quote

from tests.fuzz import schemas, values
from tests.fuzz.catalog import WRITES, Case, Catalog

JSON_TYPES = ("application/json",) * 12 + (
    None, "text/plain", "application/json; charset=latin-1", "application/json; charset=utf-16",
    "application/x-www-form-urlencoded", "multipart/form-data", "application/merge-patch+json",
    "*/*", "application/jsonp", "")


def json_body(case: Case, example: Any, rng: random.Random) -> None:
    """The valid example, or it mutated, or a nasty container (deep, wide, duplicate
    keys) somewhere in it, or a nasty value as the whole body."""
    roll = rng.random()
    if roll < 0.12:
        value = example
    elif roll < 0.3:
        value = values.insert(example, values.container(rng), rng)
    elif roll < 0.38:
        value = values.nasty(rng)
    else:
        value = values.mutate(example, rng)
    case.body = values.body_bytes(value, rng)
    case.content_type = rng.choice(JSON_TYPES)


def form_body(case: Case, form: dict[str, str], rng: random.Random,
              files: dict[str, tuple[str, bytes]] | None = None) -> None:
    """urlencoded, or multipart (always when there are files)."""
    if files or rng.random() < 0.3:
        case.body, case.content_type = multipart(form, files or {}, rng)
        return
    case.body = "&".join(f"{quote(as_bytes(k))}={quote(as_bytes(v))}"
                         for k, v in form.items()).encode()
    case.content_type = "application/x-www-form-urlencoded"


def as_bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]],
              rng: random.Random) -> tuple[bytes, str]:
    """A multipart/form-data body written by hand (odd names and file names included)."""
    boundary = f"fuzz{rng.randrange(10**12)}"
    out = bytearray()
    for name, value in fields.items():
        out += as_bytes(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n')
        out += as_bytes(value) + b"\r\n"
    for name, (filename, content) in files.items():
        out += as_bytes(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                      f'filename="{filename}"\r\nContent-Type: text/csv\r\n\r\n')
        out += content + b"\r\n"
    out += as_bytes(f"--{boundary}--\r\n")
    if rng.random() < 0.05:
        out = out[: rng.randrange(len(out))]  # cut short
    return bytes(out), f"multipart/form-data; boundary={boundary}"


FILE_NAMES = ("bars.csv", "", "../../evil.csv", "a\x00b.csv", "ü.csv", "x" * 300 + ".csv",
              "noext", ".csv", "CON.csv", 'q"uote.csv', "..", "/etc/passwd")


def wide_file(catalog: Catalog) -> bytes:
    """The valid CSV with 10,000 more columns."""
    lines = catalog.csv_text.splitlines()
    wide = ",".join(f"c{i}" for i in range(10_000))
    ones = ",".join("1" for _ in range(10_000))
    return "\n".join([f"{lines[0]},{wide}", *(f"{r},{ones}" for r in lines[1:61])]).encode()


def upload(catalog: Catalog, endpoint: str, rng: random.Random) -> bytes:
    """An odd file; the first upload to a route in ``heavy_left`` is the 10,000-column
    one (once only: refusing it takes seconds)."""
    if endpoint in catalog.heavy_left:
        catalog.heavy_left.discard(endpoint)
        return wide_file(catalog)
    return odd_file(catalog, rng)


def odd_file(catalog: Catalog, rng: random.Random) -> bytes:
    """An upload: valid, empty, binary, header only, damaged in one way."""
    text = catalog.csv_text
    lines = text.splitlines()
    header, rows = lines[0], lines[1:]
    makers = (
        lambda: text.encode(),
        lambda: text.encode(),
        lambda: b"",
        lambda: bytes(rng.getrandbits(8) for _ in range(4096)),
        lambda: (header + "\n").encode(),
        lambda: "\n".join([header, *rows[:5]]).encode(),
        lambda: "\n".join([header, *reversed(rows)]).encode(),
        lambda: "\n".join([header, *rows[:50], *rows[:50]]).encode(),
        lambda: "\n".join([header, rows[0].replace(",", ",nan,", 1), *rows[1:]]).encode(),
        lambda: "\n".join([header, *rows[:-1], re.sub(r"\d+\.\d+", "inf", rows[-1])]).encode(),
        lambda: "\n".join([header, *(re.sub(r",(\d)", r",-\1", r) for r in rows)]).encode(),
        lambda: text.encode("utf-16"),
        lambda: ("Daté," + text).encode("latin-1", "replace"),
        lambda: text.replace("\n", "\x00\n", 3).encode(),
        lambda: b"\xef\xbb\xbf" + text.encode(),
        lambda: b"\n\n\n",
        lambda: text.replace(",", ";").encode(),
        lambda: b"A" * 1_000_000,
    )
    return rng.choice(makers)()


# ----------------------------------------------------------------- per-route bodies


def _predict_example(catalog: Catalog, args: dict[str, str], rng: random.Random) -> Any:
    doc = catalog.openapi.get(args.get("dir_name", "")) or catalog.openapi.get("") or \
        rng.choice(list(catalog.openapi.values()))
    return doc.predict_example(rng)


def json_example(endpoint: str, args: dict[str, str], catalog: Catalog,
                 rng: random.Random) -> dict[str, Any] | None:
    """A valid JSON body for ``endpoint``; None when it reads no JSON."""
    if endpoint.rsplit(".", 1)[-1] in ("predict", "predict_model"):
        return _predict_example(catalog, args, rng)
    if endpoint == "backtests.api_run":
        return schemas.backtest_example(catalog.model_dirs, catalog.csv_names, catalog.period,
                                        rng, as_json=True)
    if endpoint == "train.control":
        return {"action": rng.choice(("pause", "resume", "stop"))}
    return None


def add_body(case: Case, endpoint: str, args: dict[str, str], catalog: Catalog,
             rng: random.Random) -> None:
    """The body ``endpoint`` reads, from a valid example; other routes get a stray one."""
    example = json_example(endpoint, args, catalog, rng)
    if endpoint == "train.control" and rng.random() < 0.3:
        form_body(case, schemas.mutate_form(example, ["action"], rng), rng)
    elif example is not None:
        json_body(case, example, rng)
    elif endpoint == "train.start":
        _train_form(case, catalog, rng)
    elif endpoint == "backtests.submit":
        _backtest_form(case, catalog, rng)
    elif endpoint == "hosting.host":
        form = {"model": rng.choice(catalog.model_dirs), "action": rng.choice(("", "host",
                                                                              "stop"))}
        form_body(case, _maybe_mutated(form, rng), rng)
    elif endpoint == "library.delete":
        form = {"confirm": args.get("dir_name", "")}
        form_body(case, _maybe_mutated(form, rng), rng)
    elif case.method in WRITES or rng.random() < 0.08:
        stray_body(case, catalog, rng)


def _maybe_mutated(form: dict[str, str], rng: random.Random) -> dict[str, str]:
    if rng.random() < 0.3:
        return form
    return schemas.mutate_form(form, list(schemas.names_read("form")), rng)


def _train_form(case: Case, catalog: Catalog, rng: random.Random) -> None:
    from web.training_form import form_types

    type_name = rng.choice(form_types())
    form = schemas.train_example(type_name, catalog.csv_names, rng)
    names = [*form, "model_type", "model_name", "csv", "mode"]
    form = _maybe_mutated(form, rng) if rng.random() < 0.3 else \
        schemas.mutate_form(form, names, rng)
    files = None
    if rng.random() < 0.35:
        files = {"csv_upload": (rng.choice(FILE_NAMES), upload(catalog, "train.start", rng))}
    form_body(case, form, rng, files)


def _backtest_form(case: Case, catalog: Catalog, rng: random.Random) -> None:
    from web.backtests import FIELDS

    form = schemas.backtest_example(catalog.model_dirs, catalog.csv_names, catalog.period,
                                    rng, as_json=False)
    if rng.random() < 0.7:
        form = schemas.mutate_form(form, list(FIELDS), rng)
    files = None
    if rng.random() < 0.35:
        files = {"upload": (rng.choice(FILE_NAMES), upload(catalog, "backtests.submit", rng))}
    form_body(case, form, rng, files)


def stray_body(case: Case, catalog: Catalog, rng: random.Random) -> None:
    if rng.random() < 0.6:
        json_body(case, {"action": "stop", "confirm": rng.choice(catalog.model_dirs)}, rng)
    else:
        names = list(schemas.names_read("form"))
        form = {name: schemas.form_text(rng) for name in rng.sample(names, min(3, len(names)))}
        form_body(case, form, rng)
