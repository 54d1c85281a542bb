"""The requests: a rule's path filled with valid or nasty parameters, a query string,
headers of a browser or an attacker, and a body (tests/fuzz/bodies.py); the systematic
pass (every input with every class of value) and the random plan."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from werkzeug.routing import Rule

from tests.fuzz import schemas, values
from tests.fuzz.bodies import add_body, as_bytes, json_example, stray_body
from tests.fuzz.catalog import OTHER_SITE, REBOUND_HOST, WRITES, Case, Catalog

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
            encoded = quote(as_bytes(value), safe="/" if match.group(1) == "path" else "")
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
                    query = f"{name}={quote(as_bytes(members[0]))}"
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
        junk = quote(as_bytes(rng.choice(PATH_NASTY)), safe="")
        path = rng.choice((f"/api/{junk}", f"/{junk}", f"/predict/{junk}", "/static/../Main.py",
                           "//etc/passwd", f"/api/training-runs/{junk}/metrics/x",
                           f"/streams/{junk}/x", "/api/models/", "/openapi.json/x"))
        method = rng.choice(("GET", "POST", "DELETE"))
    case = Case(method, path, "<unrouted>", query=query_string(catalog, rng))
    header_profile(case, rng)
    if method in WRITES:
        stray_body(case, catalog, rng)
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
