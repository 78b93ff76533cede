"""Bind a step's ``func_args``, ``func_kwargs`` and resolved ``inputs`` by name to its function's signature, with the
types its defaults declare — at compile time, so a typo or a wrong type is refused before anything runs or is
submitted (and again, cheaply, when the job starts)."""

from __future__ import annotations

import difflib
import importlib
import inspect
import logging
import re
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf

from mck.errors import ConfigError, NotImplementedStep

log = logging.getLogger("mck")
#: Parameters the runner fills in itself when the function declares them.
INJECTED = ("output_path", "output_paths", "item", "log")


def import_step_function(step: DictConfig) -> Callable[..., Any]:
    func_path = str(step.wrap_params.func_path)
    module_name, _, func_name = func_path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (exc.name == module_name or module_name.startswith(exc.name + ".")):
            raise NotImplementedStep(f"step {step.name} is not implemented yet ({func_path} does not exist)") from exc
        raise
    func = getattr(module, func_name, None)
    if func is None:
        raise NotImplementedStep(f"step {step.name} is not implemented yet ({func_path} does not exist)")
    return func


_EXAMPLES = {"bool": False, "int": 0, "float": 0.0, "str": "", "dict": {}, "list": []}


def _declared_default(param: inspect.Parameter) -> Any:
    """The default to type-check against: the parameter's own, or for a ``None`` default an example of the one
    type its annotation names (``float | None`` → 0.0), so a wrong type is refused even on a done item."""
    default = param.default
    if default is not None:
        return default
    annotation = param.annotation if isinstance(param.annotation, str) else getattr(param.annotation, "__name__", "")
    names = {t for t in re.split(r"[^A-Za-z_]+", str(annotation)) if t in _EXAMPLES}
    return _EXAMPLES[names.pop()] if len(names) == 1 else None


def _check_type(name: str, value: Any, default: Any, func_path: str) -> Any:
    """Reject values whose type cannot be what the parameter's default says (int ← 'abc')."""
    if default is inspect.Parameter.empty or default is None or value is None:
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"step.func_kwargs.{name}={value!r}: expected true or false ({func_path})",
                              fix=f"step.func_kwargs.{name}=true or false")
    elif isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"step.func_kwargs.{name}={value!r}: expected an integer ({func_path})",
                              fix=f"e.g. step.func_kwargs.{name}={default}")
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"step.func_kwargs.{name}={value!r}: expected a number ({func_path})",
                              fix=f"e.g. step.func_kwargs.{name}={default}")
        return float(value)
    elif isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"step.func_kwargs.{name}={value!r}: expected a string ({func_path})",
                              fix=f"e.g. step.func_kwargs.{name}={default!r}")
    elif isinstance(default, (dict, list)):
        if not isinstance(value, type(default)):
            kind = "a mapping {…}" if isinstance(default, dict) else "a list […]"
            raise ConfigError(f"step.func_kwargs.{name}={value!r}: expected {kind} ({func_path})",
                              fix=f"give step.func_kwargs.{name} {kind}, or null")
    return value


def bind_arguments(func: Callable[..., Any], step: DictConfig, job: Any) -> dict[str, Any]:
    """Keyword arguments for ``func``: ``func_args`` + ``func_kwargs`` + the job's resolved ``inputs`` by name, plus
    ``output_path``/``output_paths``/``item``/``log`` where the function declares them. Errors name the item, the
    key, the value and the fix."""
    func_path = str(step.wrap_params.func_path)
    item = getattr(job, "item", None)
    signature = inspect.signature(func)
    params = signature.parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    try:
        func_args = OmegaConf.to_container(step.func_args, resolve=True)
        func_kwargs = OmegaConf.to_container(step.func_kwargs, resolve=True)
    except Exception as exc:
        raise ConfigError(f"cannot resolve step {step.name} arguments: {str(exc).splitlines()[0]}", item=item,
                          fix="check the interpolations in conf/step/" + str(step.name) + ".yaml") from exc
    valid = ", ".join(p for p in params if p not in INJECTED)
    kwargs: dict[str, Any] = {}
    inputs = dict(getattr(job, "inputs", {}) or {})
    for section, values in (("func_args", func_args), ("func_kwargs", func_kwargs), ("inputs", inputs)):
        for name, value in values.items():
            if name not in params and not accepts_any:
                close = difflib.get_close_matches(name, list(params), n=1)
                hint = f"did you mean {close[0]}? " if close else ""
                raise ConfigError(f"step.{section}.{name}={value!r} is not a parameter of {func_path}", item=item,
                                  fix=f"{hint}parameters: {valid}")
            if name in kwargs:
                raise ConfigError(f"step.{section}.{name} is also given in another section", item=item,
                                  fix=f"declare {name} once (inputs for files other steps write)")
            default = params[name].default if name in params else inspect.Parameter.empty
            try:
                if default is None:   # typed by its annotation: checked, passed on unchanged
                    _check_type(name, value, _declared_default(params[name]), func_path)
                    kwargs[name] = value
                else:
                    kwargs[name] = _check_type(name, value, default, func_path)
            except ConfigError as exc:
                exc.item = exc.item or item
                exc.what = exc.what.replace("step.func_kwargs.", f"step.{section}.")
                raise
    outputs = list(getattr(job, "outputs", []) or [])
    injected = {"output_path": outputs[0] if outputs else None, "output_paths": outputs, "item": item, "log": log}
    for name, value in injected.items():
        if name in params:
            kwargs[name] = value
    missing = [n for n, p in params.items() if p.default is inspect.Parameter.empty and n not in kwargs
               and p.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)]
    if missing:
        raise ConfigError(f"{func_path} needs {', '.join(missing)}", item=item,
                          fix="add them to step.func_args, or declare them as step.inputs")
    return kwargs
