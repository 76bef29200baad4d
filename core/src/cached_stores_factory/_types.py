"""Config arguments against a component's annotations: checked before it is made.

A config is text, so its values are str, int, float, bool, lists and tables.  Checking them
against the constructor's annotations (and its validators: an attrs class's, or a store's
`argument_checks`) turns a bad value into one line naming the argument, before the component
opens a file or a connection.
Annotations this module cannot judge (callables, protocols, unresolvable names) pass.
"""

from __future__ import annotations

import inspect
import sys
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from .errors import ConfigError

__all__ = [
    "ArgumentCheck",
    "argument_hints",
    "convert",
    "positive_number",
    "type_problem",
    "validator_problem",
    "whole_number",
]

ArgumentCheck = Callable[[Any], str | None]
"""What is wrong with an argument's value, or None: the checks in `Store.argument_checks`."""

_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})
_SCALARS = (bool, int, float)  # bool first: a bool annotation must not read "1" as int


def argument_hints(factory: Callable[..., Any]) -> dict[str, Any]:
    """Each keyword argument's annotation, resolved; an argument whose annotation does not
    resolve is left out (its values are not checked)."""
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return {}
    target = factory.__init__ if isinstance(factory, type) else factory  # type: ignore[misc]
    module = sys.modules.get(getattr(factory, "__module__", ""), None)
    namespace = dict(vars(module)) if module is not None else {}
    globalns = getattr(target, "__globals__", namespace)
    hints = {}
    for parameter in parameters:
        annotation = parameter.annotation
        if isinstance(annotation, str):
            annotation = _resolved(annotation, globalns, namespace)
        if annotation is not parameter.empty:
            hints[parameter.name] = annotation
    return hints


def _resolved(annotation: str, globalns: dict[str, Any], localns: dict[str, Any]) -> Any:
    """A string annotation evaluated, or `inspect.Parameter.empty` when it cannot be."""
    holder = types.SimpleNamespace(__annotations__={"value": annotation})
    try:
        return typing.get_type_hints(holder, globalns=globalns, localns=localns)["value"]
    except Exception:  # a name imported only for type checkers, a typo: not checked
        return inspect.Parameter.empty


def _members(hint: Any) -> tuple[Any, ...]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,)


def _accepts(value: Any, hint: Any) -> bool:
    """Whether `value` fits `hint`; True where the annotation cannot be judged."""
    members = _members(hint)
    if len(members) > 1:
        return any(_accepts(value, member) for member in members)
    if hint is None or hint is type(None):
        return value is None
    origin = typing.get_origin(hint) or hint
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    return _instance_of(value, origin)


def _instance_of(value: Any, origin: Any) -> bool:
    if origin in (int, float):  # a bool is not a number here; an int is a float
        allowed = int if origin is int else int | float
        return isinstance(value, allowed) and not isinstance(value, bool)
    static = getattr(origin, "_is_protocol", False) and not getattr(
        origin, "_is_runtime_protocol", False
    )
    if origin is Any or not isinstance(origin, type) or static:
        return True  # a TypeVar, a protocol, a forward reference: cannot be judged
    try:
        return isinstance(value, origin)
    except TypeError:
        return True


def _describe(hint: Any) -> str:
    names = []
    for member in _members(hint):
        if member is None or member is type(None):
            continue
        origin = typing.get_origin(member) or member
        names.append(getattr(origin, "__name__", str(member)))
    article = "an" if names and names[0][0] in "aeiou" else "a"
    return f"{article} {' or '.join(names)}" if names else "None"


def type_problem(value: Any, hint: Any, *, secret: bool) -> str | None:
    """Why `value` does not fit `hint`, or None when it does."""
    if _accepts(value, hint):
        return None
    shown = "" if secret else f" {value!r}"
    return f"must be {_describe(hint)}, not {type(value).__name__}{shown}"


def convert(text: str, hint: Any, where: str) -> Any:
    """`text` from the environment as the scalar the annotation asks for (else unchanged)."""
    members = _members(hint)
    if str in members or hint is Any:
        return text
    wanted = next((t for t in _SCALARS if t in members), None)
    if wanted is None:
        return text
    if wanted is bool:
        if text.lower() in _TRUE | _FALSE:
            return text.lower() in _TRUE
        raise ConfigError(f"{where}: {text!r} is not a bool (true/false, yes/no, on/off, 1/0)")
    try:
        return wanted(text)
    except ValueError:
        raise ConfigError(f"{where}: {text!r} is not {_describe(wanted)}") from None


def validator_problem(factory: Callable[..., Any], name: str, value: Any) -> str | None:
    """What the factory's validator for argument `name` says about `value`, if anything.

    The validators are the factory's `argument_checks` (a Store's, see `whole_number`) or
    else an attrs class's field validators.  They run without an instance, so only those that
    look at the value alone (as attrs's own do) can answer; one that needs the instance is
    skipped.
    """
    checks = getattr(factory, "argument_checks", None)
    if isinstance(checks, Mapping) and name in checks:
        problem: str | None = checks[name](value)
        return problem
    if not (isinstance(factory, type) and hasattr(factory, "__attrs_attrs__")):
        return None  # not an attrs class: attrs, a slow import, is not needed
    import attrs

    for field in attrs.fields(factory):
        if field.init and field.alias == name and field.validator is not None:
            try:
                field.validator(None, field, value)
            except (TypeError, ValueError) as exc:
                # attrs's own validators put the Attribute in args; the first is the message.
                first = exc.args[0] if exc.args else exc
                return first if isinstance(first, str) else str(exc)
            except Exception:  # it needed the instance: the constructor checks
                return None
    return None


def whole_number(low: int, high: int | None = None) -> ArgumentCheck:
    """A check that an int is at least `low` (and at most `high`), for `argument_checks`.

    None passes: whether an argument may be None is its annotation's to say.
    """
    bounds = f">= {low}" if high is None else f"from {low} to {high}"

    def check(value: Any) -> str | None:
        if value is None or (
            isinstance(value, int)
            and not isinstance(value, bool)
            and low <= value
            and (high is None or value <= high)
        ):
            return None
        return f"must be a whole number {bounds}, not {value!r}"

    return check


def positive_number(value: Any) -> str | None:
    """A check that a number (of seconds, say) is > 0, for `argument_checks`; None passes."""
    if value is None or (
        isinstance(value, int | float) and not isinstance(value, bool) and value > 0
    ):
        return None
    return f"must be a positive number, not {value!r}"
