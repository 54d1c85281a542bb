"""One request at a time: a rule's path filled with valid or nasty parameters, a query
string, headers of a browser or an attacker, and the body the route reads (mutated from
a valid example) or one it does not expect."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from werkzeug.routing import Rule
from werkzeug.test import EnvironBuilder

from tests.fuzz import schemas, values
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


# ------------------------------------------------------------------ path parameters


PATH_NASTY = ("..", ".", "%2e%2e", "a/b", "\x00", "a\x00b", "A" * 3000, "9" * 400, "-1",
              "1e309", "~root", "%", "x" * 161, "../../Main.py", "..%2f..%2fMain.py")
_ARG = re.compile(r"<(?:([^:<>]+):)?([^<>]+)>")


def _encode_segment(value: str, slashes: bool, rng: random.Random) -> str:
    raw = value.encode("utf-8", "surrogatepass")
    if rng.random() < 0.1 and value.isascii() and "\x00" not in value:
        return value  # unencoded: '..', '%' and '?' as typed
    return quote(raw, safe="/" if slashes else "")


def path_value(arg: str, converter: str | None, catalog: Catalog,
               rng: random.Random) -> tuple[str, str]:
    """(the value, its percent-encoded form) of one path parameter."""
    valid = catalog.valid_for(arg)
    if valid and rng.random() < 0.6:
        value = rng.choice(valid)
        if rng.random() < 0.15:  # almost valid
            value = rng.choice((value.upper(), value + "x", value + "\x00", value[:-1],
                                value + " ", f"{value}/..", "../" + value))
    else:
        value = rng.choice(PATH_NASTY) if rng.random() < 0.5 else values.edge_string(rng)
    return value, _encode_segment(value, converter == "path", rng)


def fill_path(rule: Rule, catalog: Catalog, rng: random.Random,
              fixed: dict[str, str] | None = None) -> tuple[str, dict[str, str]]:
    """The rule's path with every parameter filled; ``fixed`` values are used as given
    (the others: valid or nasty at random)."""
    args: dict[str, str] = {}

    def replace(match: re.Match[str]) -> str:
        name = match.group(2)
        if fixed and name in fixed:
            value = fixed[name]
            encoded = quote(_bytes(value), safe="/" if match.group(1) == "path" else "")
        else:
            value, encoded = path_value(name, match.group(1), catalog, rng)
        args[name] = value
        return encoded

    return _ARG.sub(replace, rule.rule), args


# --------------------------------------------------------------------- query string


def query_value(catalog: Catalog, rng: random.Random) -> str:
    if rng.random() < 0.6:
        return values.edge_string(rng) if rng.random() < 0.7 else \
            rng.choice(schemas.FORM_NUMBERS)
    pools = (("0", "1", "5", "50", "100", "1000", "100000", "-5", "2147483648"),
             catalog.statuses, catalog.model_types, catalog.model_dirs, catalog.csv_names,
             catalog.period, (",".join(catalog.metric_keys), "last"))
    return str(rng.choice(rng.choice([pool for pool in pools if pool])))


def query_string(catalog: Catalog, rng: random.Random, own: tuple[str, ...] = ()) -> str:
    """1-4 parameters: mostly the names the view reads (``own``), else any a view reads."""
    if rng.random() < 0.4:
        return ""
    names = schemas.names_read("args")
    parts = []
    for _ in range(rng.randrange(1, 5)):
        roll = rng.random()
        name = rng.choice(own) if own and roll < 0.7 else \
            rng.choice(names) if roll < 0.95 else values.edge_string(rng)
        value = query_value(catalog, rng).encode("utf-8", "surrogatepass")
        parts.append(f"{quote(name.encode('utf-8', 'surrogatepass'))}={quote(value)}")
    if rng.random() < 0.08:
        parts.append(rng.choice(("%zz", "a=%", "&&", "=x", "limit", "limit=1&limit=-1",
                                 "page=%FF%FE")))
    return "&".join(parts)


# ------------------------------------------------------------------------- headers


def header_profile(case: Case, rng: random.Random) -> None:
    """A browser's, a program's or an attacker's headers on ``case``."""
    roll = rng.random()
    if roll < 0.6:
        case.profile = "plain"
    elif roll < 0.68:
        case.profile, case.headers["Origin"] = "same-origin", "http://localhost"
    elif roll < 0.78:
        case.profile = "cross-site"
        case.headers["Origin"] = rng.choice((OTHER_SITE, "http://localhost.evil.example",
                                             "http://localhost:8080", "http://127.0.0.1"))
    elif roll < 0.82:
        case.profile, case.headers["Sec-Fetch-Site"] = "cross-site", "cross-site"
    elif roll < 0.88:
        case.profile = "odd-origin"
        case.headers["Origin"] = rng.choice(("null", "http://[", "://", "http://localhost:99999",
                                             "file://", "http://%00", "x" * 5000, "http://ü"))
    elif roll < 0.93:
        case.profile, case.base_url = "rebinding", f"http://{REBOUND_HOST}"
        case.headers["Origin"] = f"http://{REBOUND_HOST}"
    else:
        case.profile = "odd-accept"
        case.headers["Accept"] = rng.choice(("application/json", "text/html", "*/*;q=x", ""))
    if rng.random() < 0.03:
        case.headers["Content-Length"] = rng.choice(("-1", "99999999999", "abc"))


# --------------------------------------------------------------------------- bodies


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
    case.body = "&".join(f"{quote(_bytes(k))}={quote(_bytes(v))}"
                         for k, v in form.items()).encode()
    case.content_type = "application/x-www-form-urlencoded"


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]],
              rng: random.Random) -> tuple[bytes, str]:
    """A multipart/form-data body written by hand (odd names and file names included)."""
    boundary = f"fuzz{rng.randrange(10**12)}"
    out = bytearray()
    for name, value in fields.items():
        out += _bytes(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n')
        out += _bytes(value) + b"\r\n"
    for name, (filename, content) in files.items():
        out += _bytes(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                      f'filename="{filename}"\r\nContent-Type: text/csv\r\n\r\n')
        out += content + b"\r\n"
    out += _bytes(f"--{boundary}--\r\n")
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
        _stray_body(case, catalog, rng)


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


def _stray_body(case: Case, catalog: Catalog, rng: random.Random) -> None:
    if rng.random() < 0.6:
        json_body(case, {"action": "stop", "confirm": rng.choice(catalog.model_dirs)}, rng)
    else:
        names = list(schemas.names_read("form"))
        form = {name: schemas.form_text(rng) for name in rng.sample(names, min(3, len(names)))}
        form_body(case, form, rng)


# ------------------------------------------------------------------------ the cases


def make_case(rule: Rule, method: str, catalog: Catalog, rng: random.Random,
              view: Callable[..., Any] | None = None) -> Case:
    path, args = fill_path(rule, catalog, rng)
    own = schemas.query_names_of(view) if view is not None else ()
    case = Case(method, path, rule.rule, query=query_string(catalog, rng, own))
    header_profile(case, rng)
    add_body(case, rule.endpoint, args, catalog, rng)
    return case


def systematic(rules: list[Rule], views: dict[str, Callable[..., Any]], catalog: Catalog,
               rng: random.Random) -> list[Case]:
    """Every path parameter of every rule, and every query name a view reads (GET), with
    the first (most damaging) value of every string class, the rest valid: a class no
    random draw happened to reach (a NUL byte in ``agent_id``) is still tried on every
    input."""
    cases = []
    for rule in rules:
        methods = sorted(m for m in rule.methods or () if m not in ("HEAD", "OPTIONS"))
        for method in methods:
            for arg in rule.arguments:
                for members in values.STRING_CLASSES.values():
                    valid = {a: rng.choice(catalog.valid_for(a) or ["x"]) for a in rule.arguments}
                    path, args = fill_path(rule, catalog, rng, {**valid, arg: members[0]})
                    case = Case(method, path, rule.rule)
                    add_body(case, rule.endpoint, args, catalog, rng)
                    cases.append(case)
            if method != "GET":
                continue
            for name in schemas.query_names_of(views[rule.endpoint]):
                for members in values.STRING_CLASSES.values():
                    valid = {a: rng.choice(catalog.valid_for(a) or ["x"]) for a in rule.arguments}
                    path, _ = fill_path(rule, catalog, rng, valid)
                    query = f"{name}={quote(_bytes(members[0]))}"
                    cases.append(Case(method, path, rule.rule, query=query))
        for method in methods:
            cases += _every_field(rule, method, catalog, rng)
    return cases


# A value of each class for every field of a JSON body (strings: the classes that break
# storage and encoders, or mean something else as text).
FIELD_CLASSES = (*values.NUMBER_CLASSES.values(), values.STRING_CLASSES["control"],
                 values.STRING_CLASSES["surrogate"], values.STRING_CLASSES["long"],
                 values.STRING_CLASSES["numeric text"],
                 (values.deep(values.DEEP_LEVELS[-1]),))


def _every_field(rule: Rule, method: str, catalog: Catalog, rng: random.Random) -> list[Case]:
    """The route's valid JSON examples with each field (and each field of an object
    field: ``account_state.cash``) set to a value of each class in turn. Several examples
    are drawn, so the fields of every request form are reached."""
    if method not in WRITES:
        return []
    valid = {a: rng.choice(catalog.valid_for(a) or ["x"]) for a in rule.arguments}
    seen: set[tuple[str, ...]] = set()
    cases = []
    for _ in range(8):
        example = json_example(rule.endpoint, valid, catalog, rng)
        if not example:
            return []
        fields = [(key,) for key in example]
        fields += [(key, sub) for key, value in example.items() if isinstance(value, dict)
                   for sub in value]
        for where in (f for f in fields if f not in seen):
            seen.add(where)
            cases += [_with_field(rule, method, example, where, members[0], valid,
                                  catalog, rng) for members in FIELD_CLASSES]
    return cases


def _with_field(rule: Rule, method: str, example: dict[str, Any], where: tuple[str, ...],
                value: Any, valid: dict[str, str], catalog: Catalog,
                rng: random.Random) -> Case:
    body = json.loads(json.dumps(example))
    node = body
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    path, _ = fill_path(rule, catalog, rng, valid)
    return Case(method, path, rule.rule, body=values.encode(body).encode("utf-8", "surrogatepass"),
                content_type="application/json")


STRANGE_METHODS = ("PUT", "PATCH", "DELETE", "POST", "TRACE", "PROPFIND", "GET")


def unrouted_case(rules: list[Rule], catalog: Catalog, rng: random.Random) -> Case:
    """A method a route does not take, or a path no route has."""
    if rng.random() < 0.6:
        rule = rng.choice(rules)
        path, _ = fill_path(rule, catalog, rng)
        method = rng.choice([m for m in STRANGE_METHODS if m not in rule.methods] or ["PUT"])
    else:
        junk = quote(_bytes(rng.choice(PATH_NASTY)), safe="")
        path = rng.choice((f"/api/{junk}", f"/{junk}", f"/predict/{junk}", "/static/../Main.py",
                           "//etc/passwd", f"/api/training-runs/{junk}/metrics/x",
                           f"/streams/{junk}/x", "/api/models/", "/openapi.json/x"))
        method = rng.choice(("GET", "POST", "DELETE"))
    case = Case(method, path, "<unrouted>", query=query_string(catalog, rng))
    header_profile(case, rng)
    if method in WRITES:
        _stray_body(case, catalog, rng)
    return case


def plan(rules: list[Rule], budget: int, rng: random.Random,
         views: dict[str, Callable[..., Any]] | None = None) -> list[tuple[Rule | None, str]]:
    """(rule, method) of each request: every pair a few times, the rest weighted by the
    input a route reads (a body, path parameters, query names), a few unrouted."""
    pairs = [(rule, method) for rule in rules for method in sorted(rule.methods or ())]
    floor = max(3, budget // (len(pairs) * 5))
    planned: list[tuple[Rule | None, str]] = [pair for pair in pairs for _ in range(floor)]
    unrouted = max(10, budget // 30)
    views = views or {}
    weights = [_weight(rule, method, views.get(rule.endpoint)) for rule, method in pairs]
    extra = max(0, budget - len(planned) - unrouted)
    planned += rng.choices(pairs, weights, k=extra)
    planned += [(None, "")] * unrouted
    rng.shuffle(planned)
    return planned


def _weight(rule: Rule, method: str, view: Callable[..., Any] | None) -> float:
    if method in ("HEAD", "OPTIONS"):
        return 0.3
    if method in WRITES:
        return 6.0
    queried = len(schemas.query_names_of(view)) if view is not None else 0
    return 1.0 + len(rule.arguments) + 0.5 * queried
