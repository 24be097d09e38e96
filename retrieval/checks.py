"""Every number and choice a user can give, checked in one place, each with one clear message.

Strategy parameters are checked against their dataclass's annotations (`check_params`: Literal choices,
whole numbers, finite floats, lists of modality names) and the bounds below; the engine checks `k` and
weights; the CLIs use the same functions as argparse types, so `--k 2.5` and `k=2.5` say the same thing.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from collections.abc import Callable
from typing import Any, Literal

import numpy as np

from retrieval.errors import InvalidInputError

MAX_K = 10_000  # results per query: more is a dump of the collection, not a ranking (and FAISS allocates k per query)
MAX_WEIGHT = 1_000.0  # |weight| per query modality: beyond it float32 sums lose the other modalities entirely
MAX_COLLECTION_NAME = 200  # characters (the collections table's column, and a folder name under 255 bytes)
MODALITY_NAMES = ("image", "audio", "text")

# Inclusive bounds of numeric strategy parameters, by name (all strategies use the names in one sense).
PARAM_BOUNDS: dict[str, tuple[float, float]] = {
    "rrf_k": (0.0, 1e6),
    "candidates": (1, 100_000),
    "blend": (-MAX_WEIGHT, MAX_WEIGHT),
}


def whole_number(name: str, value: object, low: int = 1, high: int | None = None) -> int:
    """`value` as an int in [low, high]; 3.0 and numpy's integers are accepted, 2.5, True, "3" and NaN are not."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InvalidInputError(f"{name} must be a whole number, not {value!r}")
    if not float(value).is_integer():
        raise InvalidInputError(f"{name} must be a whole number, not {value!r}")
    number = int(value)
    if number < low or (high is not None and number > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise InvalidInputError(f"{name} must be {bound}, not {number}")
    return number


def finite_float(name: str, value: object, low: float = -math.inf, high: float = math.inf) -> float:
    """`value` as a finite float in [low, high]; NaN, inf, 1e308 (beyond `high`) and booleans are refused."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InvalidInputError(f"{name} must be a number, not {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise InvalidInputError(f"{name} must be a finite number, not {number}")
    if not low <= number <= high:
        raise InvalidInputError(f"{name} must be between {low:g} and {high:g}, not {number:g}")
    return number


def check_k(k: object) -> int:
    return whole_number("k", k, 1, MAX_K)


def check_weights(weights: object, what: str = "weights") -> dict[str, float]:
    """Query-side weights: a mapping of image/audio/text to finite numbers of at most MAX_WEIGHT."""
    if weights is None:
        return {}
    if not isinstance(weights, dict):
        raise InvalidInputError(f"{what} must map image/audio/text to numbers, not {weights!r}")
    out = {}
    for modality, value in weights.items():
        if modality not in MODALITY_NAMES:
            raise InvalidInputError(f"{what}: {modality!r} is not a modality; use image, audio or text")
        out[modality] = finite_float(f"weight of {modality}", value, -MAX_WEIGHT, MAX_WEIGHT)
    return out


def check_collection_name(name: object) -> str:
    """A collection name: 1-200 characters of valid Unicode without control characters."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidInputError(f"a collection name must be a non-empty string, not {name!r}")
    if len(name) > MAX_COLLECTION_NAME:
        raise InvalidInputError(f"collection name is {len(name)} characters; at most {MAX_COLLECTION_NAME}")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInputError("collection name is not valid Unicode (a lone surrogate)") from None
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise InvalidInputError(f"collection name {name!r} contains control characters")
    return name


def check_params(owner: str, params_class: type, params: dict[str, Any]) -> dict[str, Any]:
    """Each parameter's value against its annotation and bounds; returns them converted (3.0 -> 3)."""
    hints = typing.get_type_hints(params_class)
    return {
        name: _check_value(f"{owner}.{name}", hints[f.name], params[name], PARAM_BOUNDS.get(name))
        for f in dataclasses.fields(params_class)
        if (name := f.name) in params
    }


def _check_value(name: str, hint: Any, value: Any, bounds: tuple[float, float] | None) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        hint = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        if not isinstance(value, str) or value not in args:
            raise InvalidInputError(f"{name} must be one of {', '.join(map(str, args))}, not {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise InvalidInputError(f"{name} must be true or false, not {value!r}")
        return value
    if hint is int:
        low, high = bounds or (-(2**31), 2**31)
        return whole_number(name, value, int(low), int(high))
    if hint is float:
        low, high = bounds or (-1e6, 1e6)
        return finite_float(name, value, low, high)
    if hint is str:
        if not isinstance(value, str):
            raise InvalidInputError(f"{name} must be a string, not {value!r}")
        return value
    if origin is list and typing.get_origin(args[0]) is list:  # groups of modality names
        return _modality_groups(name, value)
    return value


def _modality_groups(name: str, value: Any) -> list[list[str]]:
    example = '[["image", "audio"], ["text"]]'
    if not isinstance(value, list) or not value or not all(isinstance(g, list) and g for g in value):
        raise InvalidInputError(f"{name} must be a non-empty list of non-empty lists of modalities, e.g. {example}")
    for group in value:
        for modality in group:
            if modality not in MODALITY_NAMES:
                raise InvalidInputError(f"{name}: {modality!r} is not a modality; use image, audio or text")
    return [list(group) for group in value]


# -- argparse types: the same checks, reported by argparse as "argument --k: ..." ----------------------------
def arg_type(check: Callable[[str], Any]) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return check(text)
        except InvalidInputError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = check.__name__
    return convert


def _parse_number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise InvalidInputError(f"{text!r} is not a number") from None


def positive_int(high: int | None = None) -> Callable[[str], int]:
    return arg_type(lambda text: whole_number("the value", _parse_number(text), 1, high))


def bounded_float(low: float, high: float) -> Callable[[str], float]:
    return arg_type(lambda text: finite_float("the value", _parse_number(text), low, high))


collection_name = arg_type(check_collection_name)


def json_safe(value: Any) -> Any:
    """`value` with NaN and infinities as null, so `json.dumps(..., allow_nan=False)` writes valid JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "dtype") and hasattr(value, "tolist"):  # numpy scalars and arrays
        return json_safe(value.tolist())
    return value


def json_text(value: Any) -> str:
    """Strict JSON (RFC 8259: no NaN or Infinity), indented, anything unknown as its string."""
    import json

    return json.dumps(json_safe(value), indent=2, default=str, allow_nan=False)
