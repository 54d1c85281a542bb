"""A fitted scaler as plain data (``<name>_scaler.json``), never as a pickle.

A pickle runs code when it is read, so a model folder dropped into the library (shared,
downloaded, synced) could run anything as the server's user. The scaler is therefore
stored as its class name (from an allow-list: the scalers ``data_params.scaler`` can
name), its constructor parameters and its fitted arrays, and rebuilt on load into the
same scikit-learn object. Floats are written as Python's shortest round-trip text and
read back as float64, so the rebuilt scaler transforms bit for bit like the original.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import sklearn

from Utilities.data_utils import SCALERS

FORMAT, VERSION = "galaxy-models scaler", 1
# The fitted attributes each allowed class may carry (scikit-learn's names); anything
# else in a file is refused rather than set on the object.
FITTED: dict[str, tuple[str, ...]] = {
    "StandardScaler": ("mean_", "var_", "scale_", "n_features_in_", "n_samples_seen_"),
    "RobustScaler": ("center_", "scale_", "n_features_in_"),
    "MinMaxScaler": ("min_", "scale_", "data_min_", "data_max_", "data_range_",
                     "n_features_in_", "n_samples_seen_"),
}
CLASSES: dict[str, type] = {cls.__name__: cls for cls in SCALERS.values()}
_DTYPES = ("float64", "int64")
_COUNTS = ("n_features_in_", "n_samples_seen_")  # may be plain integers
MAX_FEATURES = 10_000  # far beyond any model; bounds what a file can make us allocate


class ScalerFormatError(ValueError):
    """A scaler that cannot be written or read as plain data; the message says why."""


def scaler_to_dict(scaler: Any) -> dict[str, Any]:
    """The scaler as JSON-ready plain data; ScalerFormatError for a class not allowed."""
    name = type(scaler).__name__
    if CLASSES.get(name) is not type(scaler):
        raise ScalerFormatError(f"cannot store a {name} scaler; allowed: {sorted(CLASSES)}")
    fitted = {key: value for key, value in vars(scaler).items()
              if key.endswith("_") and not key.startswith("_")}
    extra = sorted(set(fitted) - set(FITTED[name]))
    if extra:  # e.g. feature_names_in_ from a DataFrame fit: not something we rebuild
        raise ScalerFormatError(f"the {name} carries attributes this format does not keep: "
                                f"{extra}")
    params = {key: list(value) if isinstance(value, tuple) else value
              for key, value in scaler.get_params().items()}
    return {"format": FORMAT, "version": VERSION, "class": name,
            "sklearn_version": sklearn.__version__, "params": params,
            "fitted": {key: _encode(key, value) for key, value in fitted.items()}}


def scaler_to_json(scaler: Any) -> str:
    """The scaler as strict JSON text (no NaN or Infinity tokens)."""
    document = scaler_to_dict(scaler)
    try:
        return json.dumps(document, allow_nan=False, indent=1)
    except ValueError as exc:  # a NaN in a fitted array: the training data had one
        raise ScalerFormatError(f"the scaler holds a non-finite value: {exc}") from None


def scaler_from_json(text: str | bytes) -> Any:
    """Rebuild the scaler :func:`scaler_to_json` wrote; ScalerFormatError names what is
    wrong with anything else."""
    try:
        document = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
        raise ScalerFormatError(f"not valid JSON ({exc})") from None
    return scaler_from_dict(document)


def scaler_from_dict(document: Any) -> Any:
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ScalerFormatError(f"not a scaler file (no \"format\": \"{FORMAT}\")")
    if document.get("version") != VERSION:
        raise ScalerFormatError(f"scaler file version {document.get('version')!r} is not "
                                f"supported (this version reads {VERSION})")
    name = document.get("class")
    if name not in CLASSES:
        raise ScalerFormatError(f"scaler class {name!r} is not allowed; allowed: "
                                f"{sorted(CLASSES)}")
    scaler = CLASSES[name](**_params(name, document.get("params")))
    fitted = document.get("fitted")
    if not isinstance(fitted, dict) or not set(fitted) <= set(FITTED[name]):
        raise ScalerFormatError(f"fitted attributes must be a mapping of {list(FITTED[name])}")
    n_features = fitted.get("n_features_in_")
    if isinstance(n_features, bool) or not isinstance(n_features, int) \
            or not 1 <= n_features <= MAX_FEATURES:
        raise ScalerFormatError(f"n_features_in_ must be an integer in [1, {MAX_FEATURES}]; "
                                f"got {n_features!r}")
    for key, value in fitted.items():
        setattr(scaler, key, _decode(key, value, n_features))
    return scaler


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _params(name: str, params: Any) -> dict[str, Any]:
    """Constructor parameters: only the class's own names, plain values only."""
    allowed = CLASSES[name]().get_params()
    if not isinstance(params, dict) or not set(params) <= set(allowed):
        raise ScalerFormatError(f"params must be a mapping of {sorted(allowed)}")
    checked = {}
    for key, value in params.items():
        if isinstance(value, list):  # ranges are tuples in scikit-learn
            if len(value) != 2 or not all(_is_number(v) for v in value):
                raise ScalerFormatError(f"params.{key} must be two numbers; got {value!r}")
            value = tuple(value)
        elif not (value is None or isinstance(value, bool) or _is_number(value)):
            raise ScalerFormatError(f"params.{key} must be a plain value; got {value!r}")
        checked[key] = value
    return checked


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _encode(key: str, value: Any) -> Any:
    """None and Python ints as they are; numpy scalars and 1-D arrays with their dtype."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    array = np.asarray(value)
    if str(array.dtype) not in _DTYPES or array.ndim > 1:
        raise ScalerFormatError(f"{key} must be a number or a 1-D {' or '.join(_DTYPES)} "
                                f"array; got {array.dtype} of shape {array.shape}")
    if array.ndim == 0:
        return {"dtype": str(array.dtype), "scalar": array.item()}
    return {"dtype": str(array.dtype), "values": array.tolist()}


def _decode(key: str, value: Any, n_features: int) -> Any:
    if value is None or (key in _COUNTS and isinstance(value, int)
                         and not isinstance(value, bool)):
        return value
    if not isinstance(value, dict) or value.get("dtype") not in _DTYPES \
            or set(value) not in ({"dtype", "values"}, {"dtype", "scalar"}):
        raise ScalerFormatError(f"{key} must be null, an integer or "
                                "{\"dtype\": ..., \"values\": [...]}")
    if "scalar" in value:
        if key not in _COUNTS or not _is_number(value["scalar"]):
            raise ScalerFormatError(f"{key} must be an array of {n_features} numbers")
        array = np.asarray(value["scalar"], dtype=value["dtype"])[()]
    else:
        values = value["values"]
        if not isinstance(values, list) or len(values) != n_features \
                or not all(_is_number(v) for v in values):
            raise ScalerFormatError(f"{key} must hold {n_features} numbers (n_features_in_)")
        array = np.asarray(values, dtype=value["dtype"])
    if not np.isfinite(array).all():  # 1e999 parses as inf without a NaN token
        raise ScalerFormatError(f"{key} holds a non-finite number")
    return array
