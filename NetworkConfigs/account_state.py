"""A request's ``account_state``: the account a prediction is asked for, checked.

PPO reads it into its observation; every other type still checks it, so a malformed
one is the same 422 whatever model is served.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from NetworkConfigs.base import ACCOUNT_FIELDS
from Utilities.accounting import Accounts
from Utilities.data_loading import MAX_PRICE, MIN_PRICE
from Utilities.data_utils import DataError

_STATE_KEYS = (*ACCOUNT_FIELDS, "price")
# Cash, units and costs beyond a thousand trillion are no account; below it, units times
# any price the data contract allows stays finite in the policy's float32 observation.
MAX_ACCOUNT_VALUE = 1e15


def account_from_state(state: dict[str, Any] | None,
                       initial_balance: float) -> tuple[Accounts, float | None]:
    """One account from a request's ``account_state`` (see ``base.ACCOUNT_FIELDS``) and
    its mark price, if given; DataError names a field that is unknown or impossible."""
    accounts = Accounts.open(1, initial_balance)
    if state is None:
        return accounts, None
    if not isinstance(state, dict):
        raise DataError(f"must be an object with any of {list(_STATE_KEYS)}; got "
                        f"{type(state).__name__}", source="account_state")
    unknown = [k for k in state if k not in _STATE_KEYS]
    if unknown:
        raise DataError(f"unknown field(s) {unknown}; valid: {list(_STATE_KEYS)}",
                        source="account_state", column=str(unknown[0]))
    values = {key: _finite_number(key, value) for key, value in state.items()}
    for key in ACCOUNT_FIELDS:
        if key in values:
            try:
                getattr(accounts, key)[0] = values[key]
            except (OverflowError, ValueError):  # e.g. 1e20 for an integer field
                raise _bad_state(key, f"{key} is out of range; got {values[key]!r}") from None
    _check_account(values, accounts)
    return accounts, values.get("price")


def _finite_number(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise _bad_state(key, f"{key} must be a number; got {value!r}")
    try:
        number = float(value)
    except OverflowError:  # an integer beyond the float range
        number = math.inf
    if not math.isfinite(number):
        raise _bad_state(key, f"{key} must be a finite number; got {value!r}")
    return number


def _check_account(values: dict[str, float], accounts: Accounts) -> None:
    """An account the trading env could be in; anything else would give the policy an
    observation it never saw (an open position with no entry price divides by zero)."""
    _check_bounds(values)
    position, units = values.get("position", 0.0), values.get("units", 0.0)
    if position not in (-1.0, 0.0, 1.0):
        raise _bad_state("position", "position must be -1 (short), 0 (flat) or 1 (long); "
                                     f"got {position!r}")
    if values.get("price", 1.0) <= 0:
        raise _bad_state("price", f"price must be positive; got {values['price']!r}")
    if values.get("entry_cost", 0.0) < 0:
        raise _bad_state("entry_cost", f"entry_cost must be >= 0; got {values['entry_cost']!r}")
    if position == 0 and units != 0:
        raise _bad_state("units", f"a flat account (position 0) holds no units; got {units!r}")
    if position != 0 and (np.sign(units) != position or accounts.entry_price[0] <= 0):
        raise _bad_state(
            "units" if np.sign(units) != position else "entry_price",
            "an open position needs units of its sign (long > 0, short < 0) and an "
            f"entry_price > 0; got position {position:g}, units {units!r}, entry_price "
            f"{values.get('entry_price', 0.0)!r}")


def _check_bounds(values: dict[str, float]) -> None:
    """Magnitudes an account can have: a price as the data contract allows (an
    entry_price may be 0, a flat account's), money and units within MAX_ACCOUNT_VALUE."""
    for key in ("price", "entry_price"):
        value = values.get(key)
        if value is None or value <= 0:
            continue  # 0 is a flat account's entry_price; the rules below name the rest
        if not MIN_PRICE <= value <= MAX_PRICE:
            raise _bad_state(key, f"{key} must be between {MIN_PRICE:g} and {MAX_PRICE:g} "
                                  f"(the data contract's price range); got {value!r}")
    for key in ("cash", "units", "entry_cost"):
        if abs(values.get(key, 0.0)) > MAX_ACCOUNT_VALUE:
            raise _bad_state(key, f"{key} must be between {-MAX_ACCOUNT_VALUE:g} and "
                                  f"{MAX_ACCOUNT_VALUE:g}; got {values[key]!r}")


def _bad_state(column: str, message: str) -> DataError:
    return DataError(message, source="account_state", column=column)
