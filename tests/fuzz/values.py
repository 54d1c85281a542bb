"""Nasty values and the JSON text they travel as.

Python's ``json.dumps`` cannot write what an attacker can (duplicate keys, 1,000 levels
of nesting, ``-0``, an integer of 310 digits as a literal, a truncated document), so
bodies are built from plain values plus two markers, :class:`Raw` (text written as it
is) and :class:`Pairs` (an object whose keys may repeat), and written by :func:`encode`.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

# Deep enough to exhaust a recursive parser (CPython's json recurses per level).
DEEP_LEVELS = (33, 981, 1000, 5000, 100_000)


@dataclass(frozen=True)
class Raw:
    """JSON text inserted verbatim (tokens Python would not write, or invalid JSON)."""

    text: str


class Pairs:
    """A JSON object as (key, value) pairs, so a key can appear twice."""

    def __init__(self, items: Any) -> None:
        self.items = list(items)


def encode(value: Any) -> str:
    """The JSON text of ``value``; NaN and infinities as the bare tokens Python's json
    reads (``NaN``, ``Infinity``), strings with ``\\u`` escapes (lone surrogates too)."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, Pairs):
        return "{" + ", ".join(f"{json.dumps(str(k))}: {encode(v)}" for k, v in value.items) + "}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))}: {encode(v)}"
                               for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(encode(v) for v in value) + "]"
    if isinstance(value, float) and value != value:
        return "NaN"
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    return json.dumps(value)


def deep(levels: int, kind: str = "list") -> Raw:
    """``levels`` nested arrays (or objects) around a 1."""
    if kind == "list":
        return Raw("[" * levels + "1" + "]" * levels)
    return Raw('{"a": ' * levels + "1" + "}" * levels)


# Values by class; a class is drawn first, then a member, so a class with few members
# (a NUL byte, a lone surrogate) is tried as often as one with many. The first member of
# each is the one the systematic requests send.
NUMBER_CLASSES: dict[str, tuple[Any, ...]] = {
    "beyond a float": (Raw("1" + "0" * 309), Raw("-" + "9" * 400), Raw("1e309"),
                       Raw("-1e309"), Raw("1.0e+400"), 10**21, 2**64),
    "huge finite": (1.7976931348623157e308, -1.7976931348623157e308, 1e300, 1e15, 10**20,
                    2**63, -(2**63) - 1, 2**53 + 1),
    "tiny": (Raw("1e-310"), 1e-310, 5e-324, -5e-324, 1e-7, Raw("-0"), Raw("-0.0"), Raw("0e0")),
    "not a number": (Raw("NaN"), Raw("Infinity"), Raw("-Infinity")),
    "plain": (0, -1, 1, 0.1, -0.5, 2**31, Raw("123456789012345678901234567890.5")),
}
STRING_CLASSES: dict[str, tuple[str, ...]] = {
    "control": ("\x00", "a\x00b", "\x00\x00", "\r\n", "\t", "\x1b[31m", "\x7f"),
    "surrogate": ("\ud800", "\udfff", "x\ud83d"),
    "unicode": ("\U0001f4a5", "ü" * 10, "\u202e", "\ufeff", "１２", "ﬁ"),
    "long": ("A" * 5000, "9" * 400),
    "path": ("..", "../../etc/passwd", "..\\..\\windows", "/etc/passwd", "%00", "%2e%2e%2f",
             "CON", ".hidden", "sample.csv", "PPO_missing"),
    "injection": ("<script>alert(1)</script>", "' OR 1=1 --", "\"; DROP TABLE runs; --",
                  "%s%n%x", "{{7*7}}", "${jndi:x}"),
    "numeric text": ("nan", "NaN", "inf", "-inf", "1e309", "-0", "1_000", "0x10", "-1", "0",
                     "true", "null", "", " "),
    "date": ("2020-13-45", "9999-12-31", "0001-01-01", "1970-01-01T00:00:00Z",
             "2024-02-30 25:61"),
}
EDGE_NUMBERS = tuple(v for members in NUMBER_CLASSES.values() for v in members)
EDGE_STRINGS = tuple(v for members in STRING_CLASSES.values() for v in members)
HUGE_STRING_CHARS = (300_000, 1_100_000)  # the second is over /predict's 1 MiB limit


def edge_number(rng: random.Random) -> Any:
    return rng.choice(rng.choice(list(NUMBER_CLASSES.values())))


# Control characters and surrogates break storage and encoders (PostgreSQL refuses NUL,
# UTF-8 refuses a lone surrogate): tried more often than the other classes.
STRING_WEIGHTS = {"control": 3, "surrogate": 2}


def edge_string(rng: random.Random) -> str:
    names = list(STRING_CLASSES)
    chosen = rng.choices(names, [STRING_WEIGHTS.get(n, 1) for n in names])[0]
    return rng.choice(STRING_CLASSES[chosen])


def scalar(rng: random.Random) -> Any:
    """One nasty scalar."""
    roll = rng.random()
    if roll < 0.5:
        return edge_number(rng)
    if roll < 0.92:
        return edge_string(rng)
    if roll < 0.98:
        return rng.choice((None, True, False))
    return "Z" * rng.choice(HUGE_STRING_CHARS)


def container(rng: random.Random) -> Any:
    """One nasty container: empty, wrong shape, very deep, very wide, duplicate keys."""
    kind = rng.randrange(10)
    if kind == 0:
        return rng.choice(([], {}, [[]], [{}], {"": {}}))
    if kind in (1, 2, 9):
        return deep(rng.choice(DEEP_LEVELS), rng.choice(("list", "dict")))
    if kind == 3:
        return Raw("[" + ",".join("0" for _ in range(rng.choice((1000, 20_000)))) + "]")
    if kind == 4:
        return Pairs([("a", scalar(rng)), ("a", scalar(rng))])
    if kind == 5:
        return [scalar(rng) for _ in range(rng.randrange(1, 5))]
    if kind == 6:
        return {scalar_key(rng): scalar(rng) for _ in range(rng.randrange(1, 4))}
    if kind == 7:
        return {str(i): i for i in range(rng.choice((100, 5000)))}
    return [container(rng)] if rng.random() < 0.5 else {"x": [scalar(rng)]}


def scalar_key(rng: random.Random) -> str:
    return rng.choice(("", "\x00", "\ud800", "__proto__", "constructor", "a" * 1000, "x",
                       "window", "model", "action", "csv"))


def nasty(rng: random.Random) -> Any:
    return scalar(rng) if rng.random() < 0.75 else container(rng)


def wrong_type(value: Any, rng: random.Random) -> Any:
    """``value`` as another JSON type (a number as text, a list as an object, ...)."""
    if isinstance(value, bool):
        return rng.choice(("true", 1, None, [value]))
    if isinstance(value, int | float):
        return rng.choice((str(value), [value], {"value": value}, bool(value), None))
    if isinstance(value, str):
        hexed = value.encode("utf-8", "surrogatepass").hex()
        return rng.choice(([value], {"": value}, 0, True, None, hexed))
    if isinstance(value, list):
        return rng.choice(({str(i): v for i, v in enumerate(value)}, value[:1], "[]", 0))
    if isinstance(value, dict):
        return rng.choice((list(value.values()), list(value), "{}", 0, None))
    return nasty(rng)


# --------------------------------------------------------------- mutating examples


def _pick(value: Any, rng: random.Random) -> tuple:
    """A node's path, by a walk down from the root choosing a child uniformly at each
    level: every top-level field is as likely as any other, however large its value
    (a 60-bar window does not drown ``account_state``)."""
    path: tuple = ()
    node = value
    while isinstance(node, dict | list) and node and rng.random() > 0.25:
        key = rng.choice(list(node)) if isinstance(node, dict) else rng.randrange(len(node))
        path, node = (*path, key), node[key]
    return path


def _get(value: Any, path: tuple) -> Any:
    for key in path:
        value = value[key]
    return value


def _set(value: Any, path: tuple, new: Any) -> Any:
    if not path:
        return new
    _get(value, path[:-1])[path[-1]] = new
    return value


def _copy(value: Any) -> Any:
    return json.loads(json.dumps(value))


def mutate(example: Any, rng: random.Random) -> Any:
    """``example`` (a plain JSON value) with one to three things broken."""
    value = _copy(example)
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        value = _mutate_once(value, rng)
    return value


def insert(example: Any, nasty_value: Any, rng: random.Random) -> Any:
    """``example`` with ``nasty_value`` in place of one of its nodes, or beside them."""
    value = _copy(example)
    path = _pick(value, rng)
    node = _get(value, path)
    if isinstance(node, dict) and rng.random() < 0.3:
        node[rng.choice([*node, "extra"]) if node else "extra"] = nasty_value
        return value
    return _set(value, path, nasty_value)


def _mutate_once(value: Any, rng: random.Random) -> Any:
    if isinstance(value, Raw | Pairs):
        return value
    path = _pick(value, rng)
    node = _get(value, path)
    if rng.random() < 0.4 and isinstance(node, int | float | str):  # same type, edge value
        same = edge_number(rng) if isinstance(node, int | float) and \
            not isinstance(node, bool) else edge_string(rng)
        return _set(value, path, same)
    op = rng.randrange(7)
    if op == 0:
        return _set(value, path, nasty(rng))
    if op == 1:
        return _set(value, path, wrong_type(node, rng))
    if op == 2 and isinstance(node, dict) and node:
        node.pop(rng.choice(list(node)))
        return value
    if op == 3 and isinstance(node, dict):
        node[scalar_key(rng) if rng.random() < 0.5 else "unexpected"] = nasty(rng)
        return value
    if op == 4 and isinstance(node, dict) and node:
        key = rng.choice(list(node))
        pairs = Pairs(node.items())
        pairs.items.append((key, nasty(rng)))
        return _set(value, path, pairs)
    if op == 5 and isinstance(node, list) and node:
        rng.shuffle(node)
        if rng.random() < 0.5:
            del node[rng.randrange(len(node)):]
        return value
    return _set(value, path, edge_number(rng) if rng.random() < 0.6 else scalar(rng))


# ------------------------------------------------------------------ raw body bytes


def body_bytes(value: Any, rng: random.Random) -> bytes:
    """The body on the wire: usually ``value``'s JSON, sometimes damaged bytes."""
    text = encode(value)
    roll = rng.random()
    if roll < 0.82:
        return text.encode("utf-8", "surrogatepass")
    damaged = (
        lambda: text[: rng.randrange(len(text) + 1)].encode("utf-8", "surrogatepass"),
        lambda: b"",
        lambda: b"\xef\xbb\xbf" + text.encode("utf-8", "surrogatepass"),  # a UTF-8 BOM
        lambda: text.encode("utf-16"),
        lambda: b"\xff\xfe\xfd" + text.encode("utf-8", "surrogatepass"),
        lambda: (text + " }]garbage").encode("utf-8", "surrogatepass"),
        lambda: text.replace('"', "'").encode("utf-8", "surrogatepass"),
        lambda: b'{"a": "\xed\xa0\x80"}',  # a raw (not escaped) surrogate: invalid UTF-8
        lambda: text.encode("utf-8", "surrogatepass") + b"\x00",
    )
    return rng.choice(damaged)()
