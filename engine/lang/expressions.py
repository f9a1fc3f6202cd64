"""The one safe evaluator for text that comes from BPMN models.

Gateway conditions, timer expressions, correlation keys, input/output mappings and script tasks
are written by people using model editors, so none of that text is trusted.  Nothing here ever
hands model text to Python's ``eval``/``exec`` or compiles it to a code object.  Instead:

* Python-like text is parsed with :func:`ast.parse` (parsing only) and Camunda JUEL text
  (``${...}`` / ``#{...}``) with a small tokenizer and precedence-climbing parser that produces
  the same :mod:`ast` node types.
* The tree is checked against a whitelist of node types, names, attributes and methods and turned
  into a tree of small Python closures (one per node) which *is* the interpreter: every operation
  goes through code in this module that enforces the resource limits before doing the work.

Values can only come from the variables passed in, from literals, from the whitelisted built-in
functions, from the functions registered by the host and from a short list of safe methods, so
there is no path from model text to arbitrary Python objects or attributes.

Resource limits (all per evaluation):

* integers may not grow beyond ``max_int_bits`` (``**``, ``*``, ``<<`` and ``int()`` are checked
  *before* computing),
* sequences produced by repetition/concatenation/string methods may not exceed
  ``max_sequence_length`` items,
* containers built by an expression may not exceed ``16 * max_sequence_length`` "weight" (total
  number of elements, nested elements and string characters, counting shared references each
  time they occur), which stops amplification through shared references such as
  ``[[x] * 1000] * 1000``,
* comprehensions, ``range`` iteration and the iterating built-ins share a budget of
  ``max_iterations`` steps, and container comparisons/hashing share a work budget of
  ``100 * max_iterations`` element steps,
* text longer than ``max_length``, trees with more than ``max_nodes`` nodes and nesting deeper than
  200 levels are refused when parsing.
"""

from __future__ import annotations

import ast
import copy
import datetime as _dt
import decimal
import functools
import itertools
import math
import operator
import re
import textwrap
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, Final, TypeVar

__all__ = [
    "Evaluator",
    "ExpressionError",
    "UnknownVariableError",
    "UnsafeExpressionError",
]

_T = TypeVar("_T")

_QUOTE_LIMIT: Final = 200
_CACHE_SIZE: Final = 2048
_MAX_DEPTH: Final = 200
_WEIGHT_FACTOR: Final = 16
_WORK_FACTOR: Final = 100
_ALLOCATION_FACTOR: Final = 4


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


def _quote(text: str) -> str:
    if len(text) > _QUOTE_LIMIT:
        text = text[: _QUOTE_LIMIT - 3] + "..."
    return repr(text)


def _rebuild_error(cls: type[ExpressionError], state: dict[str, Any]) -> ExpressionError:
    error = cls.__new__(cls)
    error.__dict__.update(state)
    error.args = (error._render(),)
    return error


class ExpressionError(Exception):
    """Bad or failing expression.

    ``str(e)`` says what went wrong and quotes the expression (truncated to about 200 characters).
    ``message`` is the bare description and ``expression`` the full text of the expression or
    script.
    """

    expression: str
    message: str
    source_kind: str

    def __init__(self, message: str, expression: str = "", *, source_kind: str = "expression") -> None:
        self.message = message
        self.expression = expression
        self.source_kind = source_kind
        super().__init__(self._render())

    def _render(self) -> str:
        if not self.expression:
            return self.message
        return f"{self.message} in {self.source_kind} {_quote(self.expression)}"

    def _attach(self, expression: str, source_kind: str) -> None:
        if not self.expression:
            self.expression = expression
            self.source_kind = source_kind
            self.args = (self._render(),)

    def _prefix(self, prefix: str) -> None:
        self.message = prefix + self.message
        self.args = (self._render(),)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_error, (type(self), dict(self.__dict__)))


class UnsafeExpressionError(ExpressionError):
    """The expression tried something forbidden (dunder, import, disallowed call, resource bomb)."""


class UnknownVariableError(ExpressionError):
    """A name that is neither a variable nor a function."""

    name: str

    def __init__(self, name: str, expression: str = "", *, source_kind: str = "expression") -> None:
        self.name = name
        super().__init__(f"unknown variable {name!r}", expression, source_kind=source_kind)


def _describe(exc: BaseException) -> str:
    """A short, user-facing description of an exception raised while interpreting."""
    if isinstance(exc, ZeroDivisionError):
        return "division by zero"
    if isinstance(exc, KeyError):
        return f"key {exc.args[0]!r} not found" if exc.args else "key not found"
    if isinstance(exc, decimal.InvalidOperation):
        return "invalid decimal operation"
    if isinstance(exc, decimal.DecimalException):
        return f"decimal arithmetic error ({type(exc).__name__})"
    text = str(exc)
    return text if text else type(exc).__name__


def _type_name(value: Any) -> str:
    return type(value).__name__


# --------------------------------------------------------------------------------------------
# Evaluation state
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Limits:
    max_length: int
    max_nodes: int
    max_int_bits: int
    max_sequence_length: int
    max_iterations: int
    max_weight: int
    max_work: int
    max_allocation: int


_SCALAR_TYPES: Final = frozenset(
    {int, float, bool, type(None), complex, decimal.Decimal, _dt.date, _dt.datetime, _dt.timedelta}
)
_BULKY: Final = (list, tuple, dict, set, frozenset)
_SEQUENCES: Final = (str, bytes, bytearray, list, tuple)
_NO_LOCALS: Final[dict[str, Any]] = {}


class _LazyGenerator:
    """Result of a generator expression; single use, iterating it is charged to the budget."""

    __slots__ = ("_iterator",)

    def __init__(self, iterator: Iterator[Any]) -> None:
        self._iterator = iterator

    def __iter__(self) -> Iterator[Any]:
        return self._iterator

    def __repr__(self) -> str:
        return "<generator expression>"


class _Ctx:
    """Per-evaluation budgets and the memo of container weights."""

    __slots__ = ("allocated", "iterations", "lim", "weights", "work")

    def __init__(self, lim: _Limits) -> None:
        self.lim = lim
        self.iterations = 0
        self.work = 0
        self.allocated = 0
        self.weights: dict[int, tuple[Any, int]] = {}

    # -- budgets ---------------------------------------------------------------------------

    def tick(self, count: int = 1) -> None:
        self.iterations += count
        if self.iterations > self.lim.max_iterations:
            raise UnsafeExpressionError(
                f"too many iterations (the limit is {self.lim.max_iterations} per evaluation)"
            )

    def charge(self, units: int) -> None:
        self.work += units
        if self.work > self.lim.max_work:
            raise UnsafeExpressionError(
                f"too much work on large values (the limit is {self.lim.max_work} element steps)"
            )

    def allocate(self, items: int) -> None:
        """Charge newly built sequences/containers (elements or characters) to the budget."""
        self.allocated += items
        if self.allocated > self.lim.max_allocation:
            raise UnsafeExpressionError(
                f"expression builds too much data (more than {self.lim.max_allocation} "
                "elements or characters in total)"
            )

    def iterate(self, obj: Any) -> Iterator[Any]:
        """Iterate over ``obj``, charging every step to the iteration budget."""
        if type(obj) is _LazyGenerator:
            return iter(obj)  # it charges its own steps
        return self._ticking(obj)

    def _ticking(self, obj: Any) -> Iterator[Any]:
        for item in obj:
            self.tick()
            yield item

    def materialize(self, obj: Any) -> list[Any]:
        return self.check_new(list(self.iterate(obj)))

    # -- sizes -----------------------------------------------------------------------------

    def weight(self, obj: Any) -> int:
        """Total number of elements, nested elements and characters of ``obj``."""
        kind = type(obj)
        if kind in _SCALAR_TYPES:
            return 0
        if kind is str or isinstance(obj, (str, bytes, bytearray)):
            return len(obj)
        if not isinstance(obj, (list, tuple, set, frozenset, dict, Mapping)):
            return 0
        hit = self.weights.get(id(obj))
        if hit is not None:
            return hit[1]
        return self._weigh(obj)

    def _weigh(self, root: Any) -> int:
        memo = self.weights
        active = {id(root)}
        stack: list[list[Any]] = [[root, _children(root), len(root)]]
        while stack:
            entry = stack[-1]
            total: int = entry[2]
            descended = False
            for child in entry[1]:
                kind = type(child)
                if kind in _SCALAR_TYPES:
                    continue
                if isinstance(child, (str, bytes, bytearray)):
                    total += len(child)
                    continue
                if not isinstance(child, (list, tuple, set, frozenset, dict, Mapping)):
                    continue
                key = id(child)
                hit = memo.get(key)
                if hit is not None:
                    total += hit[1]
                    continue
                if key in active:
                    raise UnsafeExpressionError("self-referencing data structures are not supported")
                entry[2] = total
                active.add(key)
                stack.append([child, _children(child), len(child)])
                descended = True
                break
            if descended:
                continue
            stack.pop()
            obj = entry[0]
            active.discard(id(obj))
            memo[id(obj)] = (obj, total)
            if stack:
                stack[-1][2] += total
            else:
                return total
        raise AssertionError("unreachable")  # pragma: no cover

    def limit_weight(self, weight: int) -> None:
        if weight > self.lim.max_weight:
            raise UnsafeExpressionError(
                f"result would be too large ({weight} elements including nested ones; "
                f"the limit is {self.lim.max_weight})"
            )

    def remember(self, obj: Any, weight: int) -> None:
        self.weights[id(obj)] = (obj, weight)

    def check_new(self, obj: _T) -> _T:
        """Check the size of a container that was just built by the interpreter."""
        self.allocate(len(obj))  # type: ignore[arg-type]
        self.limit_weight(self.weight(obj))
        return obj

    # -- conversions -----------------------------------------------------------------------

    def to_str(self, value: Any) -> str:
        if type(value) is str:
            return value
        if isinstance(value, _BULKY) or isinstance(value, Mapping):
            weight = self.weight(value)
            if weight > self.lim.max_sequence_length:
                raise UnsafeExpressionError(
                    f"value is too large to convert to text ({weight} elements; "
                    f"the limit is {self.lim.max_sequence_length})"
                )
            self.charge(weight + 1)
        text = str(value)
        if len(text) > self.lim.max_sequence_length:
            raise UnsafeExpressionError(
                f"text would be too long ({len(text)} characters; "
                f"the limit is {self.lim.max_sequence_length})"
            )
        self.allocate(len(text))
        return text

    def check_length(self, length: int, what: str) -> None:
        if length > self.lim.max_sequence_length:
            raise UnsafeExpressionError(
                f"{what} would create a sequence of {length} items "
                f"(the limit is {self.lim.max_sequence_length})"
            )

    def check_int(self, value: Any) -> Any:
        if isinstance(value, int) and value.bit_length() > self.lim.max_int_bits:
            raise UnsafeExpressionError(
                f"integer would be too large (more than {self.lim.max_int_bits} bits)"
            )
        return value


def _children(obj: Any) -> Iterator[Any]:
    if isinstance(obj, Mapping):
        return itertools.chain.from_iterable(obj.items())
    return iter(obj)


class _Frame:
    """What a compiled node sees: budgets, the variables and comprehension-local names."""

    __slots__ = ("ctx", "locals", "variables")

    def __init__(self, ctx: _Ctx, variables: Mapping[str, Any], local_names: dict[str, Any]) -> None:
        self.ctx = ctx
        self.variables = variables
        self.locals = local_names


_Fn = Callable[[_Frame], Any]


# --------------------------------------------------------------------------------------------
# Operators (each checks its limits before computing)
# --------------------------------------------------------------------------------------------


def _op_add(ctx: _Ctx, a: Any, b: Any) -> Any:
    if isinstance(a, _SEQUENCES) and isinstance(b, _SEQUENCES):
        ctx.check_length(len(a) + len(b), "concatenation")
        ctx.allocate(len(a) + len(b))
        if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
            weight = ctx.weight(a) + ctx.weight(b)
            ctx.limit_weight(weight)
            result = operator.add(a, b)
            ctx.remember(result, weight)
            return result
    return a + b


def _repeat(ctx: _Ctx, seq: Any, times: int) -> Any:
    count = max(int(times), 0)
    ctx.check_length(len(seq) * count, "sequence repetition")
    ctx.allocate(len(seq) * count)
    if isinstance(seq, (list, tuple)):
        weight = ctx.weight(seq) * count
        ctx.limit_weight(weight)
        result = seq * count
        ctx.remember(result, weight)
        return result
    return seq * count


def _op_mul(ctx: _Ctx, a: Any, b: Any) -> Any:
    if isinstance(a, int) and isinstance(b, int):
        if a.bit_length() + b.bit_length() > ctx.lim.max_int_bits:
            raise UnsafeExpressionError(
                f"multiplication result would be too large (more than {ctx.lim.max_int_bits} bits)"
            )
        return a * b
    if isinstance(a, _SEQUENCES) and isinstance(b, int):
        return _repeat(ctx, a, b)
    if isinstance(b, _SEQUENCES) and isinstance(a, int):
        return _repeat(ctx, b, a)
    return a * b


def _op_pow(ctx: _Ctx, a: Any, b: Any) -> Any:
    if isinstance(a, int) and isinstance(b, int) and b > 0 and abs(a) > 1:
        if b * a.bit_length() > ctx.lim.max_int_bits:
            raise UnsafeExpressionError(
                f"exponentiation result would be too large (more than {ctx.lim.max_int_bits} bits)"
            )
    try:
        return a**b
    except OverflowError:
        raise UnsafeExpressionError("exponentiation overflows") from None


def _op_lshift(ctx: _Ctx, a: Any, b: Any) -> Any:
    if isinstance(a, int) and isinstance(b, int) and a and b > 0:
        if a.bit_length() + b > ctx.lim.max_int_bits:
            raise UnsafeExpressionError(
                f"shift result would be too large (more than {ctx.lim.max_int_bits} bits)"
            )
    return a << b


def _op_mod(ctx: _Ctx, a: Any, b: Any) -> Any:
    if isinstance(a, (str, bytes, bytearray)):
        raise UnsafeExpressionError("'%' formatting of strings is not allowed")
    return a % b


def _plain_binary(function: Callable[[Any, Any], Any]) -> Callable[[_Ctx, Any, Any], Any]:
    def run(ctx: _Ctx, a: Any, b: Any) -> Any:
        return function(a, b)

    return run


def _set_binary(function: Callable[[Any, Any], Any]) -> Callable[[_Ctx, Any, Any], Any]:
    """Operators that build new sets/dicts from containers (``|``, ``&``, ``^``, ``-``)."""

    def run(ctx: _Ctx, a: Any, b: Any) -> Any:
        result = function(a, b)
        if isinstance(result, (set, frozenset, dict)):
            ctx.check_new(result)
        return result

    return run


_BINARY_OPS: Final[dict[type[ast.operator], Callable[[_Ctx, Any, Any], Any]]] = {
    ast.Add: _op_add,
    ast.Sub: _set_binary(operator.sub),
    ast.Mult: _op_mul,
    ast.Div: _plain_binary(operator.truediv),
    ast.FloorDiv: _plain_binary(operator.floordiv),
    ast.Mod: _op_mod,
    ast.Pow: _op_pow,
    ast.LShift: _op_lshift,
    ast.RShift: _plain_binary(operator.rshift),
    ast.BitOr: _set_binary(operator.or_),
    ast.BitXor: _set_binary(operator.xor),
    ast.BitAnd: _set_binary(operator.and_),
}


def _contains(a: Any, b: Any) -> bool:
    return a in b


def _not_contains(a: Any, b: Any) -> bool:
    return a not in b


# name -> (function, symbol, is_membership_test)
_COMPARE_OPS: Final[dict[type[ast.cmpop], tuple[Callable[[Any, Any], Any], str, bool]]] = {
    ast.Eq: (operator.eq, "==", False),
    ast.NotEq: (operator.ne, "!=", False),
    ast.Lt: (operator.lt, "<", False),
    ast.LtE: (operator.le, "<=", False),
    ast.Gt: (operator.gt, ">", False),
    ast.GtE: (operator.ge, ">=", False),
    ast.In: (_contains, "in", True),
    ast.NotIn: (_not_contains, "not in", True),
    ast.Is: (operator.is_, "is", False),
    ast.IsNot: (operator.is_not, "is not", False),
}


def _charge_comparison(ctx: _Ctx, a: Any, b: Any, membership: bool) -> None:
    if membership:
        if isinstance(b, (set, frozenset, dict)):
            ctx.charge(ctx.weight(a) + 1)
        else:
            ctx.charge(ctx.weight(b) + 1)
    else:
        ctx.charge(min(ctx.weight(a), ctx.weight(b)) + 1)


def _compare(
    ctx: _Ctx, function: Callable[[Any, Any], Any], symbol: str, membership: bool, a: Any, b: Any
) -> Any:
    if isinstance(a, _BULKY) or isinstance(b, _BULKY):
        _charge_comparison(ctx, a, b, membership)
    try:
        return function(a, b)
    except TypeError as exc:
        raise _comparison_error(symbol, membership, a, b, exc) from None


def _comparison_error(symbol: str, membership: bool, a: Any, b: Any, exc: TypeError) -> ExpressionError:
    if membership:
        return ExpressionError(f"cannot use {symbol!r} with {_type_name(b)!r}: {exc}")
    return ExpressionError(f"{_type_name(a)!r} and {_type_name(b)!r} cannot be compared with {symbol!r}")


def _is_empty(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, (str, bytes, list, tuple, dict, set, frozenset, Mapping, range)):
        return len(value) == 0
    return False


def _get_attribute(obj: Any, name: str, juel: bool) -> Any:
    if isinstance(obj, Mapping):
        try:
            return obj[name]
        except KeyError:
            if juel:
                return None
            raise ExpressionError(f"key {name!r} not found") from None
    allowed = _ATTRIBUTES.get(type(obj))
    if allowed is None:
        for kind, names in _ATTRIBUTES.items():
            if isinstance(obj, kind):
                allowed = names
                break
    if allowed is not None and name in allowed:
        return getattr(obj, name)
    raise UnsafeExpressionError(f"attribute {name!r} of {_type_name(obj)!r} values is not accessible")


_ATTRIBUTES: Final[dict[type, frozenset[str]]] = {
    _dt.datetime: frozenset({"year", "month", "day", "hour", "minute", "second", "microsecond"}),
    _dt.date: frozenset({"year", "month", "day"}),
    _dt.timedelta: frozenset({"days", "seconds", "microseconds"}),
}


# --------------------------------------------------------------------------------------------
# Whitelisted methods
# --------------------------------------------------------------------------------------------

_Method = Callable[..., Any]


def _plain_method(function: Callable[..., Any]) -> _Method:
    def run(ctx: _Ctx, obj: Any, *args: Any, **kwargs: Any) -> Any:
        return function(obj, *args, **kwargs)

    return run


def _str_method(function: Callable[..., Any]) -> _Method:
    def run(ctx: _Ctx, obj: Any, *args: Any, **kwargs: Any) -> Any:
        result = function(obj, *args, **kwargs)
        if isinstance(result, str):
            ctx.allocate(len(result))
        return result

    return run


def _str_replace(ctx: _Ctx, text: str, old: Any, new: Any, count: Any = -1) -> str:
    if not isinstance(old, str) or not isinstance(new, str) or not isinstance(count, int):
        raise ExpressionError("replace() expects (str, str[, int]) arguments")
    occurrences = text.count(old) if old else len(text) + 1
    if count >= 0:
        occurrences = min(occurrences, count)
    length = len(text) + occurrences * (len(new) - len(old))
    ctx.check_length(length, "replace()")
    ctx.allocate(length)
    return str.replace(text, old, new, count)


def _str_join(ctx: _Ctx, separator: str, items: Any) -> str:
    parts = list(ctx.iterate(items))
    for part in parts:
        if not isinstance(part, str):
            raise ExpressionError(f"join() expects strings, got {_type_name(part)!r}")
    total = sum(len(part) for part in parts) + len(separator) * max(len(parts) - 1, 0)
    ctx.check_length(total, "join()")
    ctx.allocate(total)
    return str.join(separator, parts)


def _str_zfill(ctx: _Ctx, text: str, width: Any) -> str:
    if not isinstance(width, int):
        raise ExpressionError("zfill() expects an integer width")
    ctx.check_length(max(len(text), width), "zfill()")
    ctx.allocate(max(len(text), width))
    return str.zfill(text, width)


def _str_split(ctx: _Ctx, text: str, *args: Any, **kwargs: Any) -> list[str]:
    ctx.allocate(len(text) + 1)
    result = str.split(text, *args, **kwargs)
    ctx.allocate(len(result))
    ctx.remember(result, len(result) + sum(len(part) for part in result))
    return result


def _seq_search(function: Callable[..., Any]) -> _Method:
    def run(ctx: _Ctx, obj: Any, *args: Any) -> Any:
        ctx.charge(ctx.weight(obj) + 1)
        return function(obj, *args)

    return run


def _map_get(ctx: _Ctx, obj: Mapping[Any, Any], key: Any, default: Any = None) -> Any:
    if isinstance(key, _BULKY):
        ctx.charge(ctx.weight(key) + 1)
    return obj.get(key, default)


def _map_keys(ctx: _Ctx, obj: Mapping[Any, Any]) -> list[Any]:
    ctx.allocate(len(obj) + 1)
    return list(obj.keys())


def _map_values(ctx: _Ctx, obj: Mapping[Any, Any]) -> list[Any]:
    ctx.allocate(len(obj) + 1)
    return list(obj.values())


def _map_items(ctx: _Ctx, obj: Mapping[Any, Any]) -> list[tuple[Any, Any]]:
    ctx.allocate(len(obj) + 1)
    return list(obj.items())


_STR_METHODS: Final[dict[str, _Method]] = {
    **{
        name: _str_method(getattr(str, name))
        for name in (
            "lower",
            "upper",
            "strip",
            "lstrip",
            "rstrip",
            "startswith",
            "endswith",
            "find",
            "count",
            "isdigit",
            "isalpha",
            "title",
            "capitalize",
        )
    },
    "split": _str_split,
    "join": _str_join,
    "replace": _str_replace,
    "zfill": _str_zfill,
}
_SEQUENCE_METHODS: Final[dict[str, _Method]] = {
    "index": _seq_search(lambda obj, *args: obj.index(*args)),
    "count": _seq_search(lambda obj, *args: obj.count(*args)),
}
_MAPPING_METHODS: Final[dict[str, _Method]] = {
    "get": _map_get,
    "keys": _map_keys,
    "values": _map_values,
    "items": _map_items,
}
_DATE_METHODS: Final[dict[str, _Method]] = {
    "isoformat": _plain_method(_dt.date.isoformat),
    "weekday": _plain_method(_dt.date.weekday),
}
_DATETIME_METHODS: Final[dict[str, _Method]] = {
    "isoformat": _plain_method(_dt.datetime.isoformat),
    "weekday": _plain_method(_dt.datetime.weekday),
    "date": _plain_method(_dt.datetime.date),
}
_TIMEDELTA_METHODS: Final[dict[str, _Method]] = {
    "total_seconds": _plain_method(_dt.timedelta.total_seconds),
}
_ALL_METHOD_NAMES: Final = frozenset(
    itertools.chain(
        _STR_METHODS,
        _SEQUENCE_METHODS,
        _MAPPING_METHODS,
        _DATE_METHODS,
        _DATETIME_METHODS,
        _TIMEDELTA_METHODS,
    )
)
_EXECUTION_METHODS: Final = frozenset({"getVariable", "getVariableLocal", "hasVariable", "hasVariableLocal"})


def _call_method(ctx: _Ctx, obj: Any, name: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
    table: Mapping[str, _Method] | None
    if isinstance(obj, str):
        table = _STR_METHODS
    elif isinstance(obj, Mapping):
        table = _MAPPING_METHODS
    elif isinstance(obj, (list, tuple)):
        table = _SEQUENCE_METHODS
    elif isinstance(obj, _dt.datetime):
        table = _DATETIME_METHODS
    elif isinstance(obj, _dt.date):
        table = _DATE_METHODS
    elif isinstance(obj, _dt.timedelta):
        table = _TIMEDELTA_METHODS
    else:
        table = None
    method = table.get(name) if table is not None else None
    if method is None:
        raise UnsafeExpressionError(f"method {name!r} is not allowed on {_type_name(obj)!r} values")
    return method(ctx, obj, *args, **kwargs)


# --------------------------------------------------------------------------------------------
# Built-in functions (each receives the evaluation context first)
# --------------------------------------------------------------------------------------------


def _arity(name: str, args: tuple[Any, ...], low: int, high: int) -> None:
    if not low <= len(args) <= high:
        expected = str(low) if low == high else f"{low} to {high}"
        raise ExpressionError(f"{name}() takes {expected} arguments ({len(args)} given)")


def _no_keywords(name: str, kwargs: Mapping[str, Any], allowed: Iterable[str] = ()) -> None:
    unexpected = sorted(set(kwargs) - set(allowed))
    if unexpected:
        raise ExpressionError(f"{name}() got an unexpected keyword argument {unexpected[0]!r}")


def _b_len(ctx: _Ctx, *args: Any, **kwargs: Any) -> int:
    _arity("len", args, 1, 1)
    _no_keywords("len", kwargs)
    return len(args[0])


def _b_str(ctx: _Ctx, *args: Any, **kwargs: Any) -> str:
    _arity("str", args, 0, 1)
    _no_keywords("str", kwargs)
    return ctx.to_str(args[0]) if args else ""


def _b_int(ctx: _Ctx, *args: Any, **kwargs: Any) -> int:
    _arity("int", args, 0, 2)
    _no_keywords("int", kwargs, ("base",))
    if not args:
        return 0
    value = args[0]
    max_digits = ctx.lim.max_int_bits // 3 + 2
    if isinstance(value, (str, bytes, bytearray)) and len(value.strip()) > max_digits:
        raise UnsafeExpressionError(f"integer would be too large (more than {ctx.lim.max_int_bits} bits)")
    if isinstance(value, decimal.Decimal) and value.is_finite() and value.adjusted() > max_digits:
        raise UnsafeExpressionError(f"integer would be too large (more than {ctx.lim.max_int_bits} bits)")
    result: int = ctx.check_int(int(*args, **kwargs))
    return result


def _b_float(ctx: _Ctx, *args: Any, **kwargs: Any) -> float:
    _arity("float", args, 0, 1)
    _no_keywords("float", kwargs)
    return float(args[0]) if args else 0.0


def _b_bool(ctx: _Ctx, *args: Any, **kwargs: Any) -> bool:
    _arity("bool", args, 0, 1)
    _no_keywords("bool", kwargs)
    return bool(args[0]) if args else False


def _b_abs(ctx: _Ctx, *args: Any, **kwargs: Any) -> Any:
    _arity("abs", args, 1, 1)
    _no_keywords("abs", kwargs)
    return abs(args[0])


def _min_max(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    def run(ctx: _Ctx, *args: Any, **kwargs: Any) -> Any:
        _no_keywords(name, kwargs, ("default",))
        if not args:
            raise ExpressionError(f"{name}() expects at least one argument")
        items = ctx.materialize(args[0]) if len(args) == 1 else list(args)
        if len(args) > 1 and kwargs:
            raise ExpressionError(f"{name}() accepts 'default' only with a single iterable")
        ctx.charge(ctx.weight(items) + 1)
        return function(items, **kwargs)

    return run


def _b_round(ctx: _Ctx, *args: Any, **kwargs: Any) -> Any:
    _arity("round", args, 1, 2)
    _no_keywords("round", kwargs, ("ndigits",))
    value = args[0]
    digits = args[1] if len(args) > 1 else kwargs.get("ndigits")
    if digits is None and isinstance(value, decimal.Decimal):
        if value.is_finite() and value.adjusted() > ctx.lim.max_int_bits // 3 + 2:
            raise UnsafeExpressionError(f"integer would be too large (more than {ctx.lim.max_int_bits} bits)")
    return ctx.check_int(round(value) if digits is None else round(value, digits))


def _b_sum(ctx: _Ctx, *args: Any, **kwargs: Any) -> Any:
    _arity("sum", args, 1, 2)
    _no_keywords("sum", kwargs, ("start",))
    total = args[1] if len(args) > 1 else kwargs.get("start", 0)
    for item in ctx.iterate(args[0]):
        total = _op_add(ctx, total, item)
    return total


def _b_sorted(ctx: _Ctx, *args: Any, **kwargs: Any) -> list[Any]:
    _arity("sorted", args, 1, 1)
    _no_keywords("sorted", kwargs, ("reverse",))
    items = ctx.materialize(args[0])
    ctx.charge((ctx.weight(items) + 1) * max(1, math.ceil(math.log2(len(items) + 1))))
    try:
        items.sort(reverse=bool(kwargs.get("reverse", False)))
    except TypeError as exc:
        raise ExpressionError(f"cannot sort these values: {exc}") from None
    return items


def _b_any(ctx: _Ctx, *args: Any, **kwargs: Any) -> bool:
    _arity("any", args, 1, 1)
    _no_keywords("any", kwargs)
    return any(ctx.iterate(args[0]))


def _b_all(ctx: _Ctx, *args: Any, **kwargs: Any) -> bool:
    _arity("all", args, 1, 1)
    _no_keywords("all", kwargs)
    return all(ctx.iterate(args[0]))


def _b_list(ctx: _Ctx, *args: Any, **kwargs: Any) -> list[Any]:
    _arity("list", args, 0, 1)
    _no_keywords("list", kwargs)
    return ctx.materialize(args[0]) if args else []


def _b_tuple(ctx: _Ctx, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
    _arity("tuple", args, 0, 1)
    _no_keywords("tuple", kwargs)
    return ctx.check_new(tuple(ctx.iterate(args[0]))) if args else ()


def _b_set(ctx: _Ctx, *args: Any, **kwargs: Any) -> set[Any]:
    _arity("set", args, 0, 1)
    _no_keywords("set", kwargs)
    if not args:
        return set()
    items = ctx.materialize(args[0])
    ctx.charge(ctx.weight(items) + 1)
    return ctx.check_new(set(items))


def _b_dict(ctx: _Ctx, *args: Any, **kwargs: Any) -> dict[Any, Any]:
    _arity("dict", args, 0, 1)
    result: dict[Any, Any] = {}
    if args:
        source = args[0]
        pairs: Iterable[Any] = source.items() if isinstance(source, Mapping) else source
        for pair in ctx.iterate(pairs):
            key, value = pair
            if isinstance(key, _BULKY):
                ctx.charge(ctx.weight(key) + 1)
            result[key] = value
    result.update(kwargs)
    return ctx.check_new(result)


def _b_range(ctx: _Ctx, *args: Any, **kwargs: Any) -> range:
    _arity("range", args, 1, 3)
    _no_keywords("range", kwargs)
    result = range(*args)
    try:
        length = len(result)
    except OverflowError:
        length = ctx.lim.max_sequence_length + 1
    ctx.check_length(length, "range()")
    return result


def _b_decimal(ctx: _Ctx, *args: Any, **kwargs: Any) -> decimal.Decimal:
    _arity("Decimal", args, 0, 1)
    _no_keywords("Decimal", kwargs)
    if not args:
        return decimal.Decimal(0)
    value = args[0]
    if not isinstance(value, (str, int, float, decimal.Decimal)):
        raise ExpressionError(f"Decimal() expects a string or a number, got {_type_name(value)!r}")
    if isinstance(value, str) and len(value) > ctx.lim.max_int_bits:
        raise UnsafeExpressionError("decimal literal is too long")
    try:
        return decimal.Decimal(value.strip() if isinstance(value, str) else value)
    except decimal.InvalidOperation:
        raise ExpressionError(f"invalid decimal value {value!r}") from None


_DATE_KEYWORDS: Final = ("year", "month", "day")
_DATETIME_KEYWORDS: Final = (*_DATE_KEYWORDS, "hour", "minute", "second", "microsecond", "tzinfo", "fold")
_TIMEDELTA_KEYWORDS: Final = ("days", "seconds", "microseconds", "milliseconds", "minutes", "hours", "weeks")


def _b_date(ctx: _Ctx, *args: Any, **kwargs: Any) -> _dt.date:
    _no_keywords("date", kwargs, _DATE_KEYWORDS)
    return _dt.date(*args, **kwargs)


def _b_datetime(ctx: _Ctx, *args: Any, **kwargs: Any) -> _dt.datetime:
    _no_keywords("datetime", kwargs, _DATETIME_KEYWORDS)
    tz = kwargs.get("tzinfo", args[7] if len(args) > 7 else None)
    if tz is not None and not isinstance(tz, _dt.tzinfo):
        raise ExpressionError("datetime() expects a tzinfo object for 'tzinfo'")
    return _dt.datetime(*args, **kwargs)


def _b_timedelta(ctx: _Ctx, *args: Any, **kwargs: Any) -> _dt.timedelta:
    _no_keywords("timedelta", kwargs, _TIMEDELTA_KEYWORDS)
    return _dt.timedelta(*args, **kwargs)


def _b_is_empty(ctx: _Ctx, *args: Any, **kwargs: Any) -> bool:
    _arity("is_empty", args, 1, 1)
    _no_keywords("is_empty", kwargs)
    return _is_empty(args[0])


_BUILTINS: Final[dict[str, Callable[..., Any]]] = {
    "len": _b_len,
    "str": _b_str,
    "int": _b_int,
    "float": _b_float,
    "bool": _b_bool,
    "abs": _b_abs,
    "min": _min_max("min", min),
    "max": _min_max("max", max),
    "round": _b_round,
    "sum": _b_sum,
    "sorted": _b_sorted,
    "any": _b_any,
    "all": _b_all,
    "list": _b_list,
    "dict": _b_dict,
    "set": _b_set,
    "tuple": _b_tuple,
    "range": _b_range,
    "Decimal": _b_decimal,
    "date": _b_date,
    "datetime": _b_datetime,
    "timedelta": _b_timedelta,
    "is_empty": _b_is_empty,
}

# Names that may never be called (and never be registered as functions).
_FORBIDDEN_CALLS: Final = frozenset(
    {
        "open",
        "eval",
        "exec",
        "compile",
        "getattr",
        "setattr",
        "delattr",
        "hasattr",
        "globals",
        "locals",
        "vars",
        "dir",
        "type",
        "object",
        "super",
        "isinstance",
        "issubclass",
        "callable",
        "classmethod",
        "staticmethod",
        "property",
        "memoryview",
        "bytearray",
        "bytes",
        "breakpoint",
        "input",
        "print",
        "help",
        "exit",
        "quit",
        "id",
        "hash",
        "iter",
        "next",
        "format",
        "repr",
        "ascii",
        "chr",
        "ord",
        "import",
        "reload",
        "map",
        "filter",
    }
)

# Attribute names that are refused statically (everything starting with "_" is refused too).
_FORBIDDEN_ATTRIBUTES: Final = frozenset(
    {
        "format",
        "format_map",
        "mro",
        "gi_frame",
        "gi_code",
        "gi_yieldframe",
        "cr_frame",
        "cr_code",
        "ag_frame",
        "ag_code",
        "f_globals",
        "f_locals",
        "f_builtins",
        "f_back",
        "f_code",
        "tb_frame",
        "tb_next",
        "co_code",
        "func_globals",
        "func_code",
    }
)

_CONSTANT_ALIASES: Final[dict[str, Any]] = {"true": True, "false": False, "null": None}


def _check_name(name: str) -> None:
    if name.startswith("_"):
        raise UnsafeExpressionError(f"name {name!r} is not allowed (names starting with '_' are reserved)")


def _check_attribute(name: str) -> None:
    if name.startswith("_"):
        raise UnsafeExpressionError(
            f"attribute {name!r} is not allowed (names starting with '_' are reserved)"
        )
    if name in _FORBIDDEN_ATTRIBUTES:
        raise UnsafeExpressionError(f"attribute {name!r} is not allowed")


# --------------------------------------------------------------------------------------------
# JUEL parser: produces ast nodes
# --------------------------------------------------------------------------------------------


class _Empty(ast.expr):
    """JUEL ``empty x``."""

    _fields = ("operand",)
    operand: ast.expr


_JUEL_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
  | (?P<op>==|!=|<=|>=|&&|\|\||[<>!+\-*/%?:.,()\[\]{}])
    """,
    re.VERBOSE | re.DOTALL,
)
_JUEL_WORD_OPERATORS: Final = frozenset(
    {"and", "or", "not", "eq", "ne", "lt", "gt", "le", "ge", "div", "mod", "empty", "instanceof"}
)
_JUEL_EQUALITY: Final[dict[str, type[ast.cmpop]]] = {
    "==": ast.Eq,
    "eq": ast.Eq,
    "!=": ast.NotEq,
    "ne": ast.NotEq,
}
_JUEL_RELATIONAL: Final[dict[str, type[ast.cmpop]]] = {
    "<": ast.Lt,
    "lt": ast.Lt,
    ">": ast.Gt,
    "gt": ast.Gt,
    "<=": ast.LtE,
    "le": ast.LtE,
    ">=": ast.GtE,
    "ge": ast.GtE,
}
_JUEL_ADDITIVE: Final[dict[str, type[ast.operator]]] = {"+": ast.Add, "-": ast.Sub}
_JUEL_MULTIPLICATIVE: Final[dict[str, type[ast.operator]]] = {
    "*": ast.Mult,
    "/": ast.Div,
    "div": ast.Div,
    "%": ast.Mod,
    "mod": ast.Mod,
}
_JUEL_ESCAPES: Final = {"\\": "\\", "'": "'", '"': '"'}


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "number", "name", "string", "op", "end"
    value: str
    position: int


def _juel_tokens(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    while position < len(text):
        match = _JUEL_TOKEN.match(text, position)
        if match is None:
            raise ExpressionError(f"unexpected character {text[position]!r} at position {position}")
        kind = match.lastgroup or ""
        value = match.group()
        if kind != "space":
            if kind == "name" and value in _JUEL_WORD_OPERATORS:
                kind = "op"
            tokens.append(_Token(kind, value, position))
        position = match.end()
    tokens.append(_Token("end", "", len(text)))
    return tokens


def _juel_string(literal: str) -> str:
    body = literal[1:-1]
    out: list[str] = []
    index = 0
    while index < len(body):
        char = body[index]
        if char == "\\" and index + 1 < len(body) and body[index + 1] in _JUEL_ESCAPES:
            out.append(_JUEL_ESCAPES[body[index + 1]])
            index += 2
        else:
            out.append(char)
            index += 1
    return "".join(out)


class _JuelParser:
    """Recursive-descent / precedence-climbing parser for the JUEL subset used in BPMN models."""

    def __init__(self, text: str, max_int_bits: int) -> None:
        self._tokens = _juel_tokens(text)
        self._index = 0
        self._depth = 0
        self._max_digits = max_int_bits // 3 + 2

    # -- helpers ---------------------------------------------------------------------------

    @property
    def _current(self) -> _Token:
        return self._tokens[self._index]

    def _advance(self) -> _Token:
        token = self._tokens[self._index]
        if token.kind != "end":
            self._index += 1
        return token

    def _at(self, *values: str) -> bool:
        token = self._current
        return token.kind == "op" and token.value in values

    def _expect(self, value: str) -> None:
        if not self._at(value):
            self._fail(f"expected {value!r}")
        self._advance()

    def _fail(self, what: str) -> None:
        token = self._current
        found = "end of expression" if token.kind == "end" else repr(token.value)
        raise ExpressionError(f"syntax error at position {token.position}: {what}, found {found}")

    def _enter(self) -> None:
        self._depth += 1
        if self._depth > _MAX_DEPTH:
            raise ExpressionError("expression is nested too deeply")

    # -- grammar ---------------------------------------------------------------------------

    def parse(self) -> ast.expr:
        node = self._expression()
        if self._current.kind != "end":
            self._fail("unexpected token")
        return node

    def _expression(self) -> ast.expr:
        self._enter()
        test = self._or()
        if self._at("?"):
            self._advance()
            body = self._expression()
            self._expect(":")
            orelse = self._expression()
            test = ast.IfExp(test=test, body=body, orelse=orelse)
        self._depth -= 1
        return test

    def _bool(self, operators: tuple[str, ...], op: ast.boolop, operand: Callable[[], ast.expr]) -> ast.expr:
        first = operand()
        values = [first]
        while self._at(*operators):
            self._advance()
            values.append(operand())
        return first if len(values) == 1 else ast.BoolOp(op=op, values=values)

    def _or(self) -> ast.expr:
        return self._bool(("||", "or"), ast.Or(), self._and)

    def _and(self) -> ast.expr:
        return self._bool(("&&", "and"), ast.And(), self._equality)

    def _comparison(self, table: Mapping[str, type[ast.cmpop]], operand: Callable[[], ast.expr]) -> ast.expr:
        left = operand()
        while self._current.kind == "op" and self._current.value in table:
            op = table[self._advance().value]()
            left = ast.Compare(left=left, ops=[op], comparators=[operand()])
        return left

    def _equality(self) -> ast.expr:
        return self._comparison(_JUEL_EQUALITY, self._relational)

    def _relational(self) -> ast.expr:
        if self._at("instanceof"):
            self._fail("'instanceof' is not supported")
        return self._comparison(_JUEL_RELATIONAL, self._additive)

    def _arithmetic(
        self, table: Mapping[str, type[ast.operator]], operand: Callable[[], ast.expr]
    ) -> ast.expr:
        left = operand()
        while self._current.kind == "op" and self._current.value in table:
            op = table[self._advance().value]()
            left = ast.BinOp(left=left, op=op, right=operand())
        return left

    def _additive(self) -> ast.expr:
        return self._arithmetic(_JUEL_ADDITIVE, self._multiplicative)

    def _multiplicative(self) -> ast.expr:
        return self._arithmetic(_JUEL_MULTIPLICATIVE, self._unary)

    def _unary(self) -> ast.expr:
        if self._at("-", "!", "not", "empty"):
            self._enter()
            value = self._advance().value
            operand = self._unary()
            self._depth -= 1
            if value == "-":
                return ast.UnaryOp(op=ast.USub(), operand=operand)
            if value == "empty":
                empty = _Empty()
                empty.operand = operand
                return empty
            return ast.UnaryOp(op=ast.Not(), operand=operand)
        return self._value()

    def _value(self) -> ast.expr:
        node = self._primary()
        while True:
            if self._at("."):
                self._advance()
                token = self._advance()
                if token.kind != "name":
                    self._index -= 1
                    self._fail("expected a property name after '.'")
                node = ast.Attribute(value=node, attr=token.value, ctx=ast.Load())
                if self._at("("):
                    node = ast.Call(func=node, args=self._arguments(), keywords=[])
            elif self._at("["):
                self._enter()
                self._advance()
                index = self._expression()
                self._expect("]")
                self._depth -= 1
                node = ast.Subscript(value=node, slice=index, ctx=ast.Load())
            else:
                return node

    def _arguments(self) -> list[ast.expr]:
        self._expect("(")
        return self._sequence(")")

    def _sequence(self, closing: str) -> list[ast.expr]:
        self._enter()
        items: list[ast.expr] = []
        if not self._at(closing):
            items.append(self._expression())
            while self._at(","):
                self._advance()
                items.append(self._expression())
        self._expect(closing)
        self._depth -= 1
        return items

    def _primary(self) -> ast.expr:
        token = self._advance()
        if token.kind == "number":
            return ast.Constant(value=self._number(token))
        if token.kind == "string":
            return ast.Constant(value=_juel_string(token.value))
        if token.kind == "name":
            if token.value in _CONSTANT_ALIASES:
                return ast.Constant(value=_CONSTANT_ALIASES[token.value])
            name = ast.Name(id=token.value, ctx=ast.Load())
            if self._at("("):
                return ast.Call(func=name, args=self._arguments(), keywords=[])
            return name
        if token.kind == "op" and token.value == "(":
            self._enter()
            node = self._expression()
            self._expect(")")
            self._depth -= 1
            return node
        if token.kind == "op" and token.value == "[":
            return ast.List(elts=self._sequence("]"), ctx=ast.Load())
        if token.kind == "op" and token.value == "{":
            return self._braces()
        self._index -= 1 if token.kind != "end" else 0
        self._fail("expected a value")
        raise AssertionError("unreachable")  # pragma: no cover

    def _braces(self) -> ast.expr:
        self._enter()
        if self._at("}"):
            self._advance()
            self._depth -= 1
            return ast.Dict(keys=[], values=[])
        first = self._expression()
        if self._at(":"):
            keys: list[ast.expr | None] = [first]
            self._advance()
            values = [self._expression()]
            while self._at(","):
                self._advance()
                keys.append(self._expression())
                self._expect(":")
                values.append(self._expression())
            self._expect("}")
            self._depth -= 1
            return ast.Dict(keys=keys, values=values)
        items = [first]
        while self._at(","):
            self._advance()
            items.append(self._expression())
        self._expect("}")
        self._depth -= 1
        return ast.Set(elts=items)

    def _number(self, token: _Token) -> int | float:
        text = token.value
        if "." in text or "e" in text or "E" in text:
            return float(text)
        if len(text) > self._max_digits:
            raise UnsafeExpressionError(f"number literal at position {token.position} is too large")
        return int(text)


def _find_closing(text: str, start: int) -> int:
    """Index of the ``}`` that closes a ``${`` whose body starts at ``start``; -1 if none."""
    depth = 0
    quote = ""
    index = start
    length = len(text)
    while index < length:
        char = text[index]
        if quote:
            if char == "\\":
                index += 2
                continue
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "{":
            depth += 1
        elif char == "}":
            if depth == 0:
                return index
            depth -= 1
        index += 1
    return -1


def _split_template(text: str) -> list[str | tuple[str, int]]:
    """Split a template into literal text and ``(juel_body, position)`` parts."""
    parts: list[str | tuple[str, int]] = []
    literal: list[str] = []
    index = 0
    length = len(text)
    while index < length:
        char = text[index]
        if char in "$#" and text.startswith("{", index + 1):
            if literal and literal[-1] == "\\":
                literal[-1] = char  # escaped: \${ is a literal ${
                index += 1
                continue
            close = _find_closing(text, index + 2)
            if close < 0:
                raise ExpressionError(f"unterminated '{char}{{' at position {index}")
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append((text[index + 2 : close], index))
            index = close + 1
            continue
        literal.append(char)
        index += 1
    if literal:
        parts.append("".join(literal))
    return parts


# --------------------------------------------------------------------------------------------
# Compiler: ast -> closures
# --------------------------------------------------------------------------------------------

_REFUSED_NODES: Final[dict[type, str]] = {
    ast.Lambda: "lambda expressions are not allowed",
    ast.NamedExpr: "assignment expressions (':=') are not allowed",
    ast.JoinedStr: "f-strings are not allowed",
    ast.FormattedValue: "f-strings are not allowed",
    ast.Yield: "'yield' is not allowed",
    ast.YieldFrom: "'yield' is not allowed",
    ast.Await: "'await' is not allowed",
    ast.Starred: "starred expressions are only allowed in calls and displays",
    ast.Slice: "slices are only allowed in subscripts",
}


def _count_nodes(tree: ast.AST, limit: int) -> None:
    count = 0
    for _ in ast.walk(tree):
        count += 1
        if count > limit:
            raise ExpressionError(f"expression is too complex (more than {limit} syntax nodes)")


def _parse_python(text: str, mode: str) -> ast.AST:
    try:
        return ast.parse(text, mode=mode)
    except SyntaxError as exc:
        where = f" (line {exc.lineno}, column {exc.offset})" if exc.lineno else ""
        raise ExpressionError(f"invalid syntax: {exc.msg}{where}") from None
    except (RecursionError, MemoryError):
        raise ExpressionError("expression is nested too deeply") from None
    except (ValueError, OverflowError) as exc:
        raise ExpressionError(f"invalid syntax: {exc}") from None


class _Compiler:
    """Turns whitelisted ast nodes into closures ``(frame) -> value``."""

    def __init__(self, evaluator: Evaluator, *, juel: bool) -> None:
        self._lim = evaluator._limits
        self._functions = evaluator._functions
        self._juel = juel
        # Values of the literal-only subexpressions compiled so far (see _fold).
        self._literals: dict[_Fn, Any] = {}

    def compile(self, node: ast.AST, bound: frozenset[str], depth: int = 0) -> _Fn:
        if depth > _MAX_DEPTH:
            raise ExpressionError("expression is nested too deeply")
        handler = _HANDLERS.get(type(node))
        if handler is None:
            message = _REFUSED_NODES.get(type(node))
            if message is None:
                message = f"{type(node).__name__} is not allowed in expressions"
            raise UnsafeExpressionError(message)
        return handler(self, node, bound, depth + 1)

    # -- leaves ----------------------------------------------------------------------------

    def _constant(self, node: ast.Constant, bound: frozenset[str], depth: int) -> _Fn:
        value = node.value
        if value is not None and not isinstance(value, (bool, int, float, str)):
            raise ExpressionError(f"{_type_name(value)} literals are not supported")
        if isinstance(value, int) and value.bit_length() > self._lim.max_int_bits:
            raise UnsafeExpressionError(
                f"integer literal is too large (more than {self._lim.max_int_bits} bits)"
            )
        fn = _constant_fn(value)
        self._literals[fn] = value
        return fn

    def _name(self, node: ast.Name, bound: frozenset[str], depth: int) -> _Fn:
        name = node.id
        _check_name(name)
        if name in bound:

            def local(frame: _Frame) -> Any:
                return frame.locals[name]

            return local
        if name in _CONSTANT_ALIASES:
            return _constant_fn(_CONSTANT_ALIASES[name])
        is_function = name in self._functions

        def variable(frame: _Frame) -> Any:
            try:
                return frame.variables[name]
            except KeyError:
                pass
            if is_function:
                raise ExpressionError(f"function {name!r} can only be called")
            raise UnknownVariableError(name)

        return variable

    # -- operators -------------------------------------------------------------------------

    def _bool_op(self, node: ast.BoolOp, bound: frozenset[str], depth: int) -> _Fn:
        values = [self.compile(value, bound, depth) for value in node.values]
        is_and = isinstance(node.op, ast.And)
        coerce = self._juel
        if len(values) == 2:
            first, second = values
            if is_and:

                def and2(frame: _Frame) -> Any:
                    return first(frame) and second(frame)

                run: _Fn = and2
            else:

                def or2(frame: _Frame) -> Any:
                    return first(frame) or second(frame)

                run = or2
        else:

            def many(frame: _Frame) -> Any:
                result: Any = None
                for value in values:
                    result = value(frame)
                    if bool(result) != is_and:
                        return result
                return result

            run = many
        if coerce:
            inner = run

            def coerced(frame: _Frame) -> Any:
                return bool(inner(frame))

            return coerced
        return run

    def _bin_op(self, node: ast.BinOp, bound: frozenset[str], depth: int) -> _Fn:
        op = _BINARY_OPS.get(type(node.op))
        if op is None:
            raise UnsafeExpressionError(f"operator {type(node.op).__name__} is not supported")
        left = self.compile(node.left, bound, depth)
        right = self.compile(node.right, bound, depth)
        if op is _op_add:

            def add(frame: _Frame) -> Any:
                a = left(frame)
                b = right(frame)
                if type(a) is int and type(b) is int:
                    return a + b
                return _op_add(frame.ctx, a, b)

            return self._fold(add, op, left, right)

        def binary(frame: _Frame) -> Any:
            return op(frame.ctx, left(frame), right(frame))

        return self._fold(binary, op, left, right)

    def _fold(self, fn: _Fn, op: Callable[..., Any], *operands: _Fn) -> _Fn:
        """Compute arithmetic on literals alone (``9**9**9``, ``'a' * 10**9``) once, under the evaluation
        limits, so that the deploy-time check refuses a resource bomb instead of leaving it to the first
        instance that runs it. The compiled function is returned unchanged."""
        if all(operand in self._literals for operand in operands):
            values = [self._literals[operand] for operand in operands]
            try:
                # A fresh budget per operation: only a bomb by itself is refused, never two branches together.
                self._literals[fn] = op(_Ctx(self._lim), *values)
            except UnsafeExpressionError:
                raise
            except (RecursionError, MemoryError):
                raise UnsafeExpressionError("expression is too complex to evaluate") from None
            except Exception:  # noqa: S110 - other failures (1 / 0) stay errors of the running instance
                pass
        return fn

    def _unary_op(self, node: ast.UnaryOp, bound: frozenset[str], depth: int) -> _Fn:
        operand = self.compile(node.operand, bound, depth)
        op = node.op
        if isinstance(op, ast.Not):

            def negate(frame: _Frame) -> Any:
                return not operand(frame)

            return negate
        if isinstance(op, ast.USub):

            def minus(frame: _Frame) -> Any:
                return -operand(frame)

            return self._fold(minus, lambda _ctx, value: -value, operand)
        if isinstance(op, ast.UAdd):

            def plus(frame: _Frame) -> Any:
                return +operand(frame)

            return plus

        def invert(frame: _Frame) -> Any:
            return ~operand(frame)

        return invert

    def _empty(self, node: _Empty, bound: frozenset[str], depth: int) -> _Fn:
        operand = self.compile(node.operand, bound, depth)

        def empty(frame: _Frame) -> Any:
            return _is_empty(operand(frame))

        return empty

    def _if_exp(self, node: ast.IfExp, bound: frozenset[str], depth: int) -> _Fn:
        test = self.compile(node.test, bound, depth)
        body = self.compile(node.body, bound, depth)
        orelse = self.compile(node.orelse, bound, depth)

        def choose(frame: _Frame) -> Any:
            return body(frame) if test(frame) else orelse(frame)

        return choose

    def _compare_node(self, node: ast.Compare, bound: frozenset[str], depth: int) -> _Fn:
        left = self.compile(node.left, bound, depth)
        steps = [
            (*_COMPARE_OPS[type(op)], self.compile(comparator, bound, depth))
            for op, comparator in zip(node.ops, node.comparators, strict=True)
        ]
        if len(steps) == 1:
            function, symbol, membership, right = steps[0]

            def single(frame: _Frame) -> Any:
                a = left(frame)
                b = right(frame)
                if isinstance(a, _BULKY) or isinstance(b, _BULKY):
                    _charge_comparison(frame.ctx, a, b, membership)
                try:
                    return function(a, b)
                except TypeError as exc:
                    raise _comparison_error(symbol, membership, a, b, exc) from None

            return single

        def chained(frame: _Frame) -> Any:
            a = left(frame)
            result: Any = True
            for function, symbol, membership, right in steps:
                b = right(frame)
                result = _compare(frame.ctx, function, symbol, membership, a, b)
                if not result:
                    return result
                a = b
            return result

        return chained

    # -- access ----------------------------------------------------------------------------

    def _attribute(self, node: ast.Attribute, bound: frozenset[str], depth: int) -> _Fn:
        _check_attribute(node.attr)
        value = self.compile(node.value, bound, depth)
        name = node.attr
        juel = self._juel

        def attribute(frame: _Frame) -> Any:
            obj = value(frame)
            if type(obj) is dict:
                try:
                    return obj[name]
                except KeyError:
                    pass
            return _get_attribute(obj, name, juel)

        return attribute

    def _subscript(self, node: ast.Subscript, bound: frozenset[str], depth: int) -> _Fn:
        value = self.compile(node.value, bound, depth)
        index = node.slice
        if isinstance(index, ast.Slice):
            parts = [
                None if part is None else self.compile(part, bound, depth)
                for part in (index.lower, index.upper, index.step)
            ]

            def sliced(frame: _Frame) -> Any:
                obj = value(frame)
                lower, upper, step = (None if part is None else part(frame) for part in parts)
                result = obj[lower:upper:step]
                if isinstance(result, _SEQUENCES):
                    frame.ctx.allocate(len(result))
                return result

            return sliced
        key_fn = self.compile(index, bound, depth)

        def item(frame: _Frame) -> Any:
            obj = value(frame)
            key = key_fn(frame)
            if isinstance(key, _BULKY):
                frame.ctx.charge(frame.ctx.weight(key) + 1)
            return obj[key]

        return item

    # -- calls -----------------------------------------------------------------------------

    def _arguments(
        self, node: ast.Call, bound: frozenset[str], depth: int
    ) -> Callable[[_Frame], tuple[list[Any], dict[str, Any]]]:
        positional = [
            (
                isinstance(arg, ast.Starred),
                self.compile(arg.value, bound, depth)
                if isinstance(arg, ast.Starred)
                else self._argument(arg, bound, depth),
            )
            for arg in node.args
        ]
        keywords = [(keyword.arg, self._argument(keyword.value, bound, depth)) for keyword in node.keywords]
        for keyword_name, _ in keywords:
            if keyword_name is not None:
                _check_name(keyword_name)
        simple = not keywords and not any(star for star, _ in positional)
        plain = [fn for _, fn in positional]

        if simple:

            def only_positional(frame: _Frame) -> tuple[list[Any], dict[str, Any]]:
                return [fn(frame) for fn in plain], {}

            return only_positional

        def evaluate_arguments(frame: _Frame) -> tuple[list[Any], dict[str, Any]]:
            args: list[Any] = []
            for star, fn in positional:
                if star:
                    args.extend(frame.ctx.iterate(fn(frame)))
                    frame.ctx.check_length(len(args), "argument unpacking")
                else:
                    args.append(fn(frame))
            kwargs: dict[str, Any] = {}
            for keyword_name, fn in keywords:
                if keyword_name is not None:
                    kwargs[keyword_name] = fn(frame)
                    continue
                mapping = fn(frame)
                if not isinstance(mapping, Mapping):
                    raise ExpressionError(f"'**' expects a mapping, got {_type_name(mapping)!r}")
                frame.ctx.tick(len(mapping))
                for key, item in mapping.items():
                    if not isinstance(key, str):
                        raise ExpressionError("keyword argument names must be strings")
                    _check_name(key)
                    kwargs[key] = item
            return args, kwargs

        return evaluate_arguments

    def _call(self, node: ast.Call, bound: frozenset[str], depth: int) -> _Fn:
        func = node.func
        if isinstance(func, ast.Name):
            return self._function_call(node, func.id, bound, depth)
        if isinstance(func, ast.Attribute):
            _check_attribute(func.attr)
            target = func.value
            if (
                isinstance(target, ast.Name)
                and target.id == "execution"
                and "execution" not in bound
                and func.attr in _EXECUTION_METHODS
            ):
                return self._execution_call(node, func.attr, bound, depth)
            obj_fn = self.compile(target, bound, depth)
            if func.attr not in _ALL_METHOD_NAMES:
                raise UnsafeExpressionError(f"method {func.attr!r} is not allowed")
            arguments = self._arguments(node, bound, depth)
            method = func.attr

            def method_call(frame: _Frame) -> Any:
                obj = obj_fn(frame)
                args, kwargs = arguments(frame)
                return _call_method(frame.ctx, obj, method, args, kwargs)

            return method_call
        raise UnsafeExpressionError("only registered functions and whitelisted methods can be called")

    def _function_call(self, node: ast.Call, name: str, bound: frozenset[str], depth: int) -> _Fn:
        _check_name(name)
        if name in _FORBIDDEN_CALLS:
            raise UnsafeExpressionError(f"calling {name!r} is not allowed")
        if name in bound:
            raise UnsafeExpressionError(
                f"{name!r} is a variable, not a function; only functions can be called"
            )
        arguments = self._arguments(node, bound, depth)
        user_function = self._functions.get(name)
        if user_function is not None and user_function is not _BUILTINS.get(name):
            function = user_function

            def user_call(frame: _Frame) -> Any:
                args, kwargs = arguments(frame)
                try:
                    return function(*args, **kwargs)
                except ExpressionError:
                    raise
                except Exception as exc:
                    raise ExpressionError(f"function {name!r} failed: {_describe(exc)}") from exc

            return user_call
        builtin = _BUILTINS.get(name)
        if builtin is None:
            raise UnsafeExpressionError(f"unknown function {name!r}; only registered functions can be called")

        def builtin_call(frame: _Frame) -> Any:
            args, kwargs = arguments(frame)
            return builtin(frame.ctx, *args, **kwargs)

        return builtin_call

    def _execution_call(self, node: ast.Call, method: str, bound: frozenset[str], depth: int) -> _Fn:
        if node.keywords or len(node.args) != 1 or isinstance(node.args[0], ast.Starred):
            raise ExpressionError(f"execution.{method}() expects exactly one variable name")
        argument = self.compile(node.args[0], bound, depth)
        check_only = method.startswith("has")

        def execution(frame: _Frame) -> Any:
            name = argument(frame)
            if not isinstance(name, str):
                raise ExpressionError(
                    f"execution.{method}() expects a variable name, got {_type_name(name)!r}"
                )
            if check_only:
                return name in frame.variables
            return frame.variables.get(name)

        return execution

    # -- displays --------------------------------------------------------------------------

    def _elements(
        self, elements: list[ast.expr], bound: frozenset[str], depth: int
    ) -> Callable[[_Frame], list[Any]]:
        parts = [
            (
                isinstance(e, ast.Starred),
                self.compile(e.value if isinstance(e, ast.Starred) else e, bound, depth),
            )
            for e in elements
        ]
        if not any(star for star, _ in parts):
            plain = [fn for _, fn in parts]

            def build_plain(frame: _Frame) -> list[Any]:
                return [fn(frame) for fn in plain]

            return build_plain

        def build(frame: _Frame) -> list[Any]:
            items: list[Any] = []
            for star, fn in parts:
                if star:
                    items.extend(frame.ctx.iterate(fn(frame)))
                    frame.ctx.check_length(len(items), "unpacking")
                else:
                    items.append(fn(frame))
            return items

        return build

    def _list(self, node: ast.List, bound: frozenset[str], depth: int) -> _Fn:
        build = self._elements(node.elts, bound, depth)

        def make_list(frame: _Frame) -> Any:
            return frame.ctx.check_new(build(frame))

        if all(isinstance(e, ast.Constant) for e in node.elts):
            self._literals[make_list] = [e.value for e in node.elts]  # type: ignore[attr-defined]
        return make_list

    def _tuple(self, node: ast.Tuple, bound: frozenset[str], depth: int) -> _Fn:
        build = self._elements(node.elts, bound, depth)

        def make_tuple(frame: _Frame) -> Any:
            return frame.ctx.check_new(tuple(build(frame)))

        if all(isinstance(e, ast.Constant) for e in node.elts):
            self._literals[make_tuple] = tuple(e.value for e in node.elts)  # type: ignore[attr-defined]
        return make_tuple

    def _set(self, node: ast.Set, bound: frozenset[str], depth: int) -> _Fn:
        build = self._elements(node.elts, bound, depth)

        def make_set(frame: _Frame) -> Any:
            items = build(frame)
            frame.ctx.charge(frame.ctx.weight(items) + 1)
            return frame.ctx.check_new(set(items))

        return make_set

    def _dict(self, node: ast.Dict, bound: frozenset[str], depth: int) -> _Fn:
        entries = [
            (None if key is None else self.compile(key, bound, depth), self.compile(value, bound, depth))
            for key, value in zip(node.keys, node.values, strict=True)
        ]

        def make_dict(frame: _Frame) -> Any:
            ctx = frame.ctx
            result: dict[Any, Any] = {}
            for key_fn, value_fn in entries:
                if key_fn is None:
                    mapping = value_fn(frame)
                    if not isinstance(mapping, Mapping):
                        raise ExpressionError(f"'**' expects a mapping, got {_type_name(mapping)!r}")
                    ctx.tick(len(mapping))
                    result.update(mapping)
                    continue
                key = key_fn(frame)
                if isinstance(key, _BULKY):
                    ctx.charge(ctx.weight(key) + 1)
                result[key] = value_fn(frame)
            return ctx.check_new(result)

        return make_dict

    # -- comprehensions --------------------------------------------------------------------

    def _generators(
        self, generators: list[ast.comprehension], bound: frozenset[str], depth: int
    ) -> tuple[list[tuple[_Fn, Callable[[dict[str, Any], Any, _Ctx], None], list[_Fn]]], frozenset[str]]:
        compiled = []
        inner = bound
        for generator in generators:
            if generator.is_async:
                raise UnsafeExpressionError("'async for' is not allowed")
            iterable = self.compile(generator.iter, inner, depth)
            names, assign = _local_target(generator.target)
            inner = inner | names
            conditions = [self.compile(condition, inner, depth) for condition in generator.ifs]
            compiled.append((iterable, assign, conditions))
        return compiled, inner

    def _comprehension(
        self, node: ast.AST, bound: frozenset[str], depth: int
    ) -> Callable[[_Frame], Iterator[Any]]:
        assert isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp))
        generators, inner = self._generators(node.generators, bound, depth)
        element: _Fn
        if isinstance(node, ast.DictComp):
            key_fn = self.compile(node.key, inner, depth)
            value_fn = self.compile(node.value, inner, depth)

            def pair(frame: _Frame) -> Any:
                return (key_fn(frame), value_fn(frame))

            element = pair

        else:
            element = self.compile(node.elt, inner, depth)

        def produce(frame: _Frame) -> Iterator[Any]:
            ctx = frame.ctx
            child = _Frame(ctx, frame.variables, dict(frame.locals))
            names = child.locals
            first_iterable = generators[0][0](frame)  # evaluated eagerly, in the enclosing scope

            def level(index: int, source: Any) -> Iterator[Any]:
                _, assign, conditions = generators[index]
                last = index + 1 == len(generators)
                for item in source:
                    ctx.tick()
                    assign(names, item, ctx)
                    if conditions and not all(condition(child) for condition in conditions):
                        continue
                    if last:
                        yield element(child)
                    else:
                        yield from level(index + 1, generators[index + 1][0](child))

            return level(0, first_iterable)

        return produce

    def _list_comp(self, node: ast.ListComp | ast.GeneratorExp, bound: frozenset[str], depth: int) -> _Fn:
        produce = self._comprehension(node, bound, depth)

        def list_comp(frame: _Frame) -> Any:
            return frame.ctx.check_new(list(produce(frame)))

        return list_comp

    def _set_comp(self, node: ast.SetComp, bound: frozenset[str], depth: int) -> _Fn:
        produce = self._comprehension(node, bound, depth)

        def set_comp(frame: _Frame) -> Any:
            items = list(produce(frame))
            frame.ctx.charge(frame.ctx.weight(items) + 1)
            return frame.ctx.check_new(set(items))

        return set_comp

    def _dict_comp(self, node: ast.DictComp, bound: frozenset[str], depth: int) -> _Fn:
        produce = self._comprehension(node, bound, depth)

        def dict_comp(frame: _Frame) -> Any:
            ctx = frame.ctx
            result: dict[Any, Any] = {}
            for key, value in produce(frame):
                if isinstance(key, _BULKY):
                    ctx.charge(ctx.weight(key) + 1)
                result[key] = value
            return ctx.check_new(result)

        return dict_comp

    def _generator_exp(self, node: ast.GeneratorExp, bound: frozenset[str], depth: int) -> _Fn:
        # Outside call arguments a generator expression is evaluated eagerly into a list, so no
        # half-consumed generator can end up in a result or a process variable.
        return self._list_comp(node, bound, depth)

    def _argument(self, node: ast.expr, bound: frozenset[str], depth: int) -> _Fn:
        """A call argument; generator expressions stay lazy so ``any(...)`` can stop early."""
        if not isinstance(node, ast.GeneratorExp):
            return self.compile(node, bound, depth)
        if depth + 1 > _MAX_DEPTH:
            raise ExpressionError("expression is nested too deeply")
        produce = self._comprehension(node, bound, depth + 1)

        def lazy_generator(frame: _Frame) -> Any:
            return _LazyGenerator(produce(frame))

        return lazy_generator


def _constant_fn(value: Any) -> _Fn:
    def constant(frame: _Frame) -> Any:
        return value

    return constant


def _local_target(target: ast.expr) -> tuple[frozenset[str], Callable[[dict[str, Any], Any, _Ctx], None]]:
    """Names bound by a comprehension target and a function that binds them."""
    if isinstance(target, ast.Name):
        name = target.id
        _check_name(name)
        if name in _CONSTANT_ALIASES:
            raise ExpressionError(f"cannot assign to {name!r}")

        def assign_name(names: dict[str, Any], value: Any, ctx: _Ctx) -> None:
            names[name] = value

        return frozenset({name}), assign_name
    if isinstance(target, (ast.Tuple, ast.List)):
        parts = [_local_target(element) for element in target.elts]
        count = len(parts)
        bound = frozenset().union(*(names for names, _ in parts))

        def assign_many(names: dict[str, Any], value: Any, ctx: _Ctx) -> None:
            items = list(itertools.islice(ctx.iterate(value), count + 1))
            if len(items) != count:
                raise ExpressionError(f"cannot unpack {_type_name(value)!r} value into {count} names")
            for (_, assign), item in zip(parts, items, strict=True):
                assign(names, item, ctx)

        return bound, assign_many
    raise UnsafeExpressionError(f"{type(target).__name__} is not allowed as a comprehension target")


_Handler = Callable[[_Compiler, Any, frozenset[str], int], _Fn]
_HANDLERS: Final[dict[type, _Handler]] = {
    ast.Expression: lambda compiler, node, bound, depth: compiler.compile(node.body, bound, depth),
    ast.Constant: _Compiler._constant,
    ast.Name: _Compiler._name,
    ast.BoolOp: _Compiler._bool_op,
    ast.BinOp: _Compiler._bin_op,
    ast.UnaryOp: _Compiler._unary_op,
    _Empty: _Compiler._empty,
    ast.IfExp: _Compiler._if_exp,
    ast.Compare: _Compiler._compare_node,
    ast.Attribute: _Compiler._attribute,
    ast.Subscript: _Compiler._subscript,
    ast.Call: _Compiler._call,
    ast.List: _Compiler._list,
    ast.Tuple: _Compiler._tuple,
    ast.Set: _Compiler._set,
    ast.Dict: _Compiler._dict,
    ast.ListComp: _Compiler._list_comp,
    ast.SetComp: _Compiler._set_comp,
    ast.DictComp: _Compiler._dict_comp,
    ast.GeneratorExp: _Compiler._generator_exp,
}


# --------------------------------------------------------------------------------------------
# Scripts
# --------------------------------------------------------------------------------------------

_STATEMENT_NAMES: Final[dict[type, str]] = {
    ast.Import: "import",
    ast.ImportFrom: "import",
    ast.FunctionDef: "def",
    ast.AsyncFunctionDef: "async def",
    ast.ClassDef: "class",
    ast.For: "for",
    ast.AsyncFor: "async for",
    ast.While: "while",
    ast.If: "if",
    ast.With: "with",
    ast.AsyncWith: "async with",
    ast.Try: "try",
    ast.TryStar: "try",
    ast.Return: "return",
    ast.Raise: "raise",
    ast.Assert: "assert",
    ast.Global: "global",
    ast.Nonlocal: "nonlocal",
    ast.Break: "break",
    ast.Continue: "continue",
    ast.Match: "match",
    ast.AnnAssign: "annotated assignment",
    ast.Expr: "expression statement",
}


class _ScriptState:
    """Working copy of the variables while a script runs; committed only on success."""

    __slots__ = ("changed", "deleted", "mutated", "owned", "work")

    def __init__(self, variables: Mapping[str, Any]) -> None:
        self.work: dict[str, Any] = dict(variables)
        self.changed: set[str] = set()
        self.deleted: set[str] = set()
        self.owned: set[str] = set()
        self.mutated = False

    def bind(self, name: str, value: Any) -> None:
        self.work[name] = value
        self.changed.add(name)
        self.deleted.discard(name)
        self.owned.discard(name)

    def own(self, name: str) -> None:
        """Before changing a value in place, make sure nothing outside the script shares it."""
        if name in self.owned:
            return
        if name not in self.work:
            raise UnknownVariableError(name)
        self.work[name] = copy.deepcopy(self.work[name])
        self.owned.add(name)

    def touch(self, name: str, ctx: _Ctx) -> None:
        self.changed.add(name)
        self.mutated = True
        ctx.weights.clear()  # cached sizes may be stale now


_Statement = Callable[[_Frame, _ScriptState], None]
_Store = Callable[[_Frame, _ScriptState, Any], None]


def _root_name(node: ast.expr) -> str:
    while isinstance(node, (ast.Subscript, ast.Attribute)):
        node = node.value
    if not isinstance(node, ast.Name):
        raise UnsafeExpressionError("assignment targets must start with a variable name")
    _check_name(node.id)
    return node.id


def _set_item(ctx: _Ctx, container: Any, key: Any, value: Any) -> None:
    if isinstance(container, MutableMapping):
        if isinstance(key, _BULKY):
            ctx.charge(ctx.weight(key) + 1)
        container[key] = value
    elif isinstance(container, list):
        container[key] = value
    else:
        raise ExpressionError(f"cannot assign items of a {_type_name(container)!r} value")


class _ScriptCompiler:
    def __init__(self, evaluator: Evaluator) -> None:
        self._expressions = _Compiler(evaluator, juel=False)
        self._empty: frozenset[str] = frozenset()

    def statement(self, node: ast.stmt) -> _Statement:
        try:
            return self._statement(node)
        except ExpressionError as exc:
            exc._prefix(f"line {node.lineno}: ")
            raise

    def _expr(self, node: ast.expr) -> _Fn:
        return self._expressions.compile(node, self._empty)

    def _statement(self, node: ast.stmt) -> _Statement:
        if isinstance(node, ast.Assign):
            return self._assign(node)
        if isinstance(node, ast.AugAssign):
            return self._aug_assign(node)
        if isinstance(node, ast.Delete):
            return self._delete(node)
        if isinstance(node, ast.Pass):
            return _pass
        kind = _STATEMENT_NAMES.get(type(node), type(node).__name__)
        raise UnsafeExpressionError(f"{kind!r} is not allowed; scripts may only assign expressions")

    def _assign(self, node: ast.Assign) -> _Statement:
        value_fn = self._expr(node.value)
        stores = [self._target(target) for target in node.targets]

        def assign(frame: _Frame, state: _ScriptState) -> None:
            value = value_fn(frame)
            if type(value) is _LazyGenerator:
                value = frame.ctx.materialize(value)
            for store in stores:
                store(frame, state, value)

        return assign

    def _target(self, node: ast.expr) -> _Store:
        if isinstance(node, ast.Name):
            name = node.id
            _check_name(name)
            if name in _CONSTANT_ALIASES:
                raise ExpressionError(f"cannot assign to {name!r}")

            def store_name(frame: _Frame, state: _ScriptState, value: Any) -> None:
                state.bind(name, value)

            return store_name
        if isinstance(node, (ast.Tuple, ast.List)):
            if any(isinstance(element, ast.Starred) for element in node.elts):
                raise UnsafeExpressionError("starred assignment targets are not supported")
            parts = [self._target(element) for element in node.elts]
            count = len(parts)

            def store_many(frame: _Frame, state: _ScriptState, value: Any) -> None:
                items = list(itertools.islice(frame.ctx.iterate(value), count + 1))
                if len(items) != count:
                    raise ExpressionError(f"cannot unpack {_type_name(value)!r} value into {count} targets")
                for store, item in zip(parts, items, strict=True):
                    store(frame, state, item)

            return store_many
        if isinstance(node, ast.Subscript):
            root = _root_name(node.value)
            if isinstance(node.slice, ast.Slice):
                raise UnsafeExpressionError("slice assignment is not supported")
            container_fn = self._expr(node.value)
            key_fn = self._expr(node.slice)

            def store_item(frame: _Frame, state: _ScriptState, value: Any) -> None:
                state.own(root)
                container = container_fn(frame)
                _set_item(frame.ctx, container, key_fn(frame), value)
                state.touch(root, frame.ctx)

            return store_item
        if isinstance(node, ast.Attribute):
            _check_attribute(node.attr)
            root = _root_name(node.value)
            container_fn = self._expr(node.value)
            attr = node.attr

            def store_attribute(frame: _Frame, state: _ScriptState, value: Any) -> None:
                state.own(root)
                container = container_fn(frame)
                if not isinstance(container, MutableMapping):
                    raise UnsafeExpressionError(
                        f"cannot set attribute {attr!r} of a {_type_name(container)!r} value; "
                        "only maps support attribute assignment"
                    )
                container[attr] = value
                state.touch(root, frame.ctx)

            return store_attribute
        raise UnsafeExpressionError(f"{type(node).__name__} is not allowed as an assignment target")

    def _aug_assign(self, node: ast.AugAssign) -> _Statement:
        op = _BINARY_OPS.get(type(node.op))
        if op is None:
            raise UnsafeExpressionError(f"operator {type(node.op).__name__} is not supported")
        value_fn = self._expr(node.value)
        target = node.target
        if isinstance(target, ast.Name):
            name = target.id
            _check_name(name)
            if name in _CONSTANT_ALIASES:
                raise ExpressionError(f"cannot assign to {name!r}")

            def aug_name(frame: _Frame, state: _ScriptState) -> None:
                if name not in state.work:
                    raise UnknownVariableError(name)
                current = state.work[name]
                state.bind(name, op(frame.ctx, current, value_fn(frame)))

            return aug_name
        if isinstance(target, ast.Subscript):
            if isinstance(target.slice, ast.Slice):
                raise UnsafeExpressionError("slice assignment is not supported")
            root = _root_name(target.value)
            container_fn = self._expr(target.value)
            key_fn = self._expr(target.slice)

            def aug_item(frame: _Frame, state: _ScriptState) -> None:
                state.own(root)
                container = container_fn(frame)
                key = key_fn(frame)
                current = container[key]
                _set_item(frame.ctx, container, key, op(frame.ctx, current, value_fn(frame)))
                state.touch(root, frame.ctx)

            return aug_item
        if isinstance(target, ast.Attribute):
            _check_attribute(target.attr)
            root = _root_name(target.value)
            container_fn = self._expr(target.value)
            attr = target.attr

            def aug_attribute(frame: _Frame, state: _ScriptState) -> None:
                state.own(root)
                container = container_fn(frame)
                if not isinstance(container, MutableMapping):
                    raise UnsafeExpressionError(
                        f"cannot set attribute {attr!r} of a {_type_name(container)!r} value; "
                        "only maps support attribute assignment"
                    )
                current = container[attr]
                container[attr] = op(frame.ctx, current, value_fn(frame))
                state.touch(root, frame.ctx)

            return aug_attribute
        raise UnsafeExpressionError(f"{type(target).__name__} is not allowed as an assignment target")

    def _delete(self, node: ast.Delete) -> _Statement:
        names: list[str] = []
        for target in node.targets:
            if not isinstance(target, ast.Name):
                raise UnsafeExpressionError("only variables can be deleted ('del name')")
            _check_name(target.id)
            names.append(target.id)

        def delete(frame: _Frame, state: _ScriptState) -> None:
            for name in names:
                if name not in state.work:
                    raise UnknownVariableError(name)
                del state.work[name]
                state.changed.discard(name)
                state.owned.discard(name)
                state.deleted.add(name)

        return delete


def _pass(frame: _Frame, state: _ScriptState) -> None:
    return None


@dataclass(frozen=True, slots=True)
class _Script:
    statements: tuple[tuple[int, _Statement], ...]


# --------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------


class Evaluator:
    """Parses, checks and interprets expressions and scripts from BPMN models.

    ``functions`` are extra functions callable by name from expressions; they override the
    built-in ones of the same name.  An evaluator is immutable and safe to share between threads;
    compiled expressions and scripts are cached per evaluator.
    """

    def __init__(
        self,
        functions: Mapping[str, Callable[..., Any]] | None = None,
        *,
        max_length: int = 20_000,
        max_nodes: int = 5_000,
        max_int_bits: int = 4_096,
        max_sequence_length: int = 1_000_000,
        max_iterations: int = 100_000,
    ) -> None:
        for name, value in (
            ("max_length", max_length),
            ("max_nodes", max_nodes),
            ("max_int_bits", max_int_bits),
            ("max_sequence_length", max_sequence_length),
            ("max_iterations", max_iterations),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self._limits = _Limits(
            max_length=max_length,
            max_nodes=max_nodes,
            max_int_bits=max_int_bits,
            max_sequence_length=max_sequence_length,
            max_iterations=max_iterations,
            max_weight=max_sequence_length * _WEIGHT_FACTOR,
            max_work=max_iterations * _WORK_FACTOR,
            max_allocation=max_sequence_length * _ALLOCATION_FACTOR,
        )
        registered: dict[str, Callable[..., Any]] = dict(_BUILTINS)
        for name, function in (functions or {}).items():
            if not isinstance(name, str) or not name.isidentifier():
                raise ValueError(f"function name {name!r} is not an identifier")
            if name.startswith("_") or name in _FORBIDDEN_CALLS or name in _CONSTANT_ALIASES:
                raise ValueError(f"function name {name!r} is reserved")
            if not callable(function):
                raise ValueError(f"function {name!r} is not callable")
            registered[name] = function
        self._functions: Mapping[str, Callable[..., Any]] = registered
        self._compiled_expression = functools.lru_cache(maxsize=_CACHE_SIZE)(self._build_expression)
        self._compiled_script = functools.lru_cache(maxsize=_CACHE_SIZE)(self._build_script)

    # -- expressions -----------------------------------------------------------------------

    def check(self, text: str) -> None:
        """Parse and statically check ``text`` without evaluating it (used at deploy time)."""
        self._expression(text)

    def evaluate(self, text: str, variables: Mapping[str, Any]) -> Any:
        """Evaluate an expression, a ``${...}``/``#{...}`` JUEL expression or a template."""
        compiled = self._expression(text)
        ctx = _Ctx(self._limits)
        try:
            result = compiled(_Frame(ctx, variables, _NO_LOCALS))
            if type(result) is _LazyGenerator:
                result = ctx.materialize(result)
            return result
        except ExpressionError as exc:
            exc._attach(text, "expression")
            raise
        except (RecursionError, MemoryError):
            raise ExpressionError("expression is too complex to evaluate", text) from None
        except Exception as exc:
            raise ExpressionError(_describe(exc), text) from exc

    def _expression(self, text: str) -> _Fn:
        if not isinstance(text, str):
            raise ExpressionError(f"expression must be a string, got {_type_name(text)!r}")
        try:
            return self._compiled_expression(text)
        except ExpressionError as exc:
            exc._attach(text, "expression")
            raise
        except (RecursionError, MemoryError):
            raise ExpressionError("expression is nested too deeply", text) from None

    def _build_expression(self, text: str) -> _Fn:
        lim = self._limits
        if len(text) > lim.max_length:
            raise ExpressionError(
                f"expression is too long ({len(text)} characters; the limit is {lim.max_length})"
            )
        stripped = text.strip()
        if not stripped:
            raise ExpressionError("expression is empty")
        if stripped[:2] in ("${", "#{") and _find_closing(stripped, 2) == len(stripped) - 1:
            return self._build_juel(stripped[2:-1])
        if "${" in text or "#{" in text:
            return self._build_template(text)
        tree = _parse_python(stripped, "eval")
        _count_nodes(tree, lim.max_nodes)
        return _Compiler(self, juel=False).compile(tree, frozenset())

    def _build_juel(self, body: str) -> _Fn:
        if not body.strip():
            raise ExpressionError("JUEL expression is empty")
        tree = _JuelParser(body, self._limits.max_int_bits).parse()
        _count_nodes(tree, self._limits.max_nodes)
        return _Compiler(self, juel=True).compile(tree, frozenset())

    def _build_template(self, text: str) -> _Fn:
        compiled: list[str | _Fn] = []
        nodes = 0
        for part in _split_template(text):
            if isinstance(part, str):
                compiled.append(part)
                continue
            body, position = part
            try:
                if not body.strip():
                    raise ExpressionError("JUEL expression is empty")
                tree = _JuelParser(body, self._limits.max_int_bits).parse()
            except ExpressionError as exc:
                exc._prefix(f"in the placeholder at position {position}: ")
                raise
            nodes += sum(1 for _ in ast.walk(tree))
            if nodes > self._limits.max_nodes:
                raise ExpressionError(
                    f"expression is too complex (more than {self._limits.max_nodes} syntax nodes)"
                )
            compiled.append(_Compiler(self, juel=True).compile(tree, frozenset()))
        parts = tuple(compiled)
        max_length = self._limits.max_sequence_length

        def render(frame: _Frame) -> str:
            out: list[str] = []
            total = 0
            for part in parts:
                piece = part if isinstance(part, str) else frame.ctx.to_str(part(frame))
                total += len(piece)
                if total > max_length:
                    raise UnsafeExpressionError(
                        f"template result would be too long (the limit is {max_length})"
                    )
                out.append(piece)
            frame.ctx.allocate(total)
            return "".join(out)

        return render

    # -- scripts ---------------------------------------------------------------------------

    def check_script(self, script: str) -> None:
        """Parse and statically check a script without running it (used at deploy time)."""
        self._script(script)

    def execute_script(self, script: str, variables: dict[str, Any]) -> dict[str, Any]:
        """Run ``script`` against ``variables`` and return ``{name: new value}`` for assigned names.

        Statements run against a working copy; ``variables`` is updated (assigned names set,
        deleted names removed) only when the whole script succeeds, so a failing script leaves
        the variables untouched.  Values changed in place (``order['x'] = 1``) are copied first,
        so objects shared with the caller are never modified.
        """
        program = self._script(script)
        ctx = _Ctx(self._limits)
        state = _ScriptState(variables)
        frame = _Frame(ctx, state.work, _NO_LOCALS)
        for lineno, statement in program.statements:
            try:
                statement(frame, state)
            except ExpressionError as exc:
                exc._prefix(f"line {lineno}: ")
                exc._attach(script, "script")
                raise
            except (RecursionError, MemoryError):
                raise ExpressionError(
                    f"line {lineno}: statement is too complex to evaluate", script, source_kind="script"
                ) from None
            except Exception as exc:
                raise ExpressionError(
                    f"line {lineno}: {_describe(exc)}", script, source_kind="script"
                ) from exc
        result = {name: state.work[name] for name in state.changed if name in state.work}
        if state.mutated:
            ctx.weights.clear()
            try:
                for value in result.values():
                    ctx.limit_weight(ctx.weight(value))
            except ExpressionError as exc:
                exc._prefix("script result: ")
                exc._attach(script, "script")
                raise
        for name in state.deleted:
            variables.pop(name, None)
        variables.update(result)
        return result

    def _script(self, script: str) -> _Script:
        if not isinstance(script, str):
            raise ExpressionError(
                f"script must be a string, got {_type_name(script)!r}", source_kind="script"
            )
        try:
            return self._compiled_script(script)
        except ExpressionError as exc:
            exc._attach(script, "script")
            raise
        except (RecursionError, MemoryError):
            raise ExpressionError("script is nested too deeply", script, source_kind="script") from None

    def _build_script(self, script: str) -> _Script:
        lim = self._limits
        if len(script) > lim.max_length:
            raise ExpressionError(
                f"script is too long ({len(script)} characters; the limit is {lim.max_length})"
            )
        if not script.strip():
            raise ExpressionError("script is empty")
        tree = _parse_python(textwrap.dedent(script), "exec")
        _count_nodes(tree, lim.max_nodes)
        assert isinstance(tree, ast.Module)
        if not tree.body:
            raise ExpressionError("script contains no statements")
        compiler = _ScriptCompiler(self)
        return _Script(tuple((statement.lineno, compiler.statement(statement)) for statement in tree.body))
