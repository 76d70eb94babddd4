"""Experiment configs: ml_collections Python files, big_vision style.

A config file defines `get_config(arg: str | None) -> ConfigDict` (and, for ablations,
`sweep() -> list[dict]`). On the command line:

    --config configs/sf2t.py:model=qwen2vl_7b,tasks=count+rearrange   # the file's own `arg`
    --config.train.lr=3e-4 --config.train.steps=100                   # field overrides

The returned ConfigDict is locked: overriding or reading a key the file does not define is an
error that names the key and lists the known ones, raised at start-up rather than an hour in.
"""
from __future__ import annotations

import ast
import importlib.util
import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import ml_collections

from sf2t_jax.errors import InputError


class ConfigKeyError(InputError, KeyError):
    """An override names a key that the config does not define."""

    def __str__(self):
        return self.args[0]


class ConfigValueError(InputError):
    """A config value of the wrong type, out of range, or naming a missing path; the message
    names the field, the value and what was expected (`sf2t_jax.validation`)."""


def parse_arg(arg: str | None, **defaults: Any) -> ml_collections.ConfigDict:
    """'model=qwen2vl_7b,steps=10' -> ConfigDict, typed by `defaults`; unknown names are errors."""
    out = ml_collections.ConfigDict(defaults)
    for item in filter(None, (arg or "").split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigValueError(f"config arg {item!r}: expected key=value")
        if key not in defaults:
            raise ConfigKeyError(f"config arg {key!r} is not known; known: {', '.join(sorted(defaults))}")
        out[key] = _coerce(value, defaults[key], key)
    return out


def load_config(spec: str, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
    """Loads `path[:arg]`, applies `key.sub=value` overrides, and returns the locked config."""
    path, _, arg = spec.partition(":")
    module = load_module(path)
    if not hasattr(module, "get_config"):
        raise InputError(f"{path}: a config file must define get_config(arg)")
    return make_config(module.get_config, arg or None, overrides)


def make_config(get_config: Callable[[str | None], ml_collections.ConfigDict], arg: str | None = None,
                overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
    """`get_config(arg)` (a config file's, or a package default such as
    `sf2t_jax.defaults.demo.demo_config`) locked, with `key.sub=value` overrides applied."""
    try:
        config = get_config(arg)
    except InputError:
        raise
    except ValueError as e:  # the file refuses its own argument (e.g. model=qwen2vl_9b)
        raise ConfigValueError(str(e)) from None
    config.lock()
    apply_overrides(config, overrides)
    return config


def load_sweep(path: str) -> list[dict[str, Any]]:
    """The variants of an ablation file: each a dict of dotted keys -> values, plus 'name'."""
    module = load_module(path.partition(":")[0])
    if not hasattr(module, "sweep"):
        raise InputError(f"{path}: an ablation file must define sweep()")
    return list(module.sweep())


def apply_overrides(config: ml_collections.ConfigDict, overrides: Iterable[str]) -> None:
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigValueError(f"override {item!r}: expected key=value")
        set_by_path(config, key, value)


def set_by_path(config: ml_collections.ConfigDict, dotted: str, value: Any) -> None:
    """Sets `a.b.c`; a string value is parsed to the type of the field it replaces."""
    *parents, leaf = dotted.split(".")
    node = config
    for i, name in enumerate(parents):
        if name not in node:
            raise ConfigKeyError(_unknown(".".join(parents[: i + 1]), node))
        node = node[name]
    if leaf not in node:
        raise ConfigKeyError(_unknown(dotted, node))
    current = node[leaf]
    value = _coerce(value, current, dotted) if isinstance(value, str) else _typed(value, current, dotted, repr(value))
    try:
        node[leaf] = value
    except TypeError:  # ml_collections refuses the type change (e.g. a dict for a number)
        raise ConfigValueError(f"config key {dotted!r}: expected {type(current).__name__}, got {value!r}") from None


def _unknown(dotted: str, node: ml_collections.ConfigDict) -> str:
    return f"config key {dotted!r} does not exist; known here: {', '.join(sorted(node.keys()))}"


def _coerce(text: str, current: Any, key: str) -> Any:
    """A command-line string -> a value of `current`'s type (the type the config file declares)."""
    if isinstance(current, str) or current is None:
        return text
    if isinstance(current, bool):
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise ConfigValueError(f"config key {key!r}: expected a boolean, got {text!r}")
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise ConfigValueError(f"config key {key!r}: cannot parse {text!r} as {type(current).__name__}") from None
    return _typed(value, current, key, repr(text))


def _typed(value: Any, current: Any, key: str, shown: str) -> Any:
    """`value` if it has the type of `current` (the declared type), else ConfigValueError.

    No silent coercion: a bool is never a number (ml_collections would store True into an int
    field, and 1.0 into a float one), a float is never an int; an int is a fine float, and a
    list a fine tuple. Values of other types (None, dicts, ConfigDicts) pass unchanged.
    """
    if current is None or not isinstance(current, (bool, int, float, str, tuple)):
        return value
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(current, tuple) and isinstance(value, list):
        return tuple(value)
    if isinstance(current, bool) != isinstance(value, bool) or not isinstance(value, type(current)):
        raise ConfigValueError(f"config key {key!r}: expected {type(current).__name__}, got {shown}")
    return value


def load_module(path: str):
    """Imports a config file (a plain Python file, not a package module) by path."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"config file {path} does not exist")
    name = "sf2t_config_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
