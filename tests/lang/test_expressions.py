"""Tests for engine.lang.expressions: the safe evaluator for model text."""

from __future__ import annotations

import datetime as dt
import pickle
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from engine.lang import expressions
from engine.lang.expressions import (
    Evaluator,
    ExpressionError,
    UnknownVariableError,
    UnsafeExpressionError,
)


@pytest.fixture(scope="module")
def ev() -> Evaluator:
    return Evaluator()


VARS: dict[str, Any] = {
    "amount": 2500,
    "approved": True,
    "rejected": False,
    "level": "major",
    "name": "Alice",
    "x": [],
    "items": [3, 1, 2],
    "order": {"amount": 1200, "customer": {"name": "Bob", "vip": True}, "lines": [{"qty": 2}, {"qty": 5}]},
    "nothing": None,
    "empty_text": "",
    "price": Decimal("19.90"),
    "due": dt.datetime(2027, 1, 31, 8, 30, 15),
    "day": dt.date(2027, 3, 1),
    "wait": dt.timedelta(days=2, seconds=30),
    "a": 7,
    "b": 0,
}


def evaluate(ev: Evaluator, text: str, **extra: Any) -> Any:
    return ev.evaluate(text, {**VARS, **extra})


# --------------------------------------------------------------------------------------------
# Python-like syntax
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("amount > 1000 and approved", True),
        ("amount > 1000 and rejected", False),
        ("rejected or 'fallback'", "fallback"),
        ("level == 'major'", True),
        ("level != 'major'", False),
        ("'yes' if approved else 'no'", "yes"),
        ("'yes' if rejected else 'no'", "no"),
        ("not approved", False),
        ("not x", True),
        ("amount + 1", 2501),
        ("amount - 500 * 2", 1500),
        ("amount / 1000", 2.5),
        ("amount // 1000", 2),
        ("amount % 1000", 500),
        ("2 ** 10", 1024),
        ("-a", -7),
        ("+a", 7),
        ("~a", -8),
        ("a << 2", 28),
        ("a >> 1", 3),
        ("a & 3", 3),
        ("a | 8", 15),
        ("a ^ 1", 6),
        ("1 < a < 10", True),
        ("1 < a < 5", False),
        ("1 < a <= 7 != 8", True),
        ("3 in items", True),
        ("4 not in items", True),
        ("'li' in name", True),
        ("nothing is None", True),
        ("amount is not None", True),
        ("'text'", "text"),
        ('"double"', "double"),
        ("42", 42),
        ("1.5", 1.5),
        ("True", True),
        ("False", False),
        ("None", None),
        ("true", True),
        ("false", False),
        ("null", None),
        ("true and not false", True),
        ("[1, 2, a]", [1, 2, 7]),
        ("(1, 'a')", (1, "a")),
        ("()", ()),
        ("{'k': a, 'n': [1]}", {"k": 7, "n": [1]}),
        ("{1, 2, 2}", {1, 2}),
        ("[*items, 4]", [3, 1, 2, 4]),
        ("{**order['customer'], 'vip': False}", {"name": "Bob", "vip": False}),
        ("order['amount']", 1200),
        ("order['customer']['name']", "Bob"),
        ("items[0]", 3),
        ("items[-1]", 2),
        ("items[1:]", [1, 2]),
        ("items[::-1]", [2, 1, 3]),
        ("name[:3]", "Ali"),
        ("order.amount", 1200),
        ("order.customer.name", "Bob"),
        ("order.lines[1].qty", 5),
        ("[i * 2 for i in items]", [6, 2, 4]),
        ("[i for i in items if i > 1]", [3, 2]),
        ("[(i, j) for i in range(2) for j in range(i, 2)]", [(0, 0), (0, 1), (1, 1)]),
        ("{i for i in items}", {1, 2, 3}),
        ("{k: v for k, v in order['customer'].items()}", {"name": "Bob", "vip": True}),
        ("sum(line['qty'] for line in order['lines'])", 7),
        ("any(i > 2 for i in items)", True),
        ("all(i > 2 for i in items)", False),
        ("[x for x in [[1, 2], [3]] for x in x]", [1, 2, 3]),
    ],
)
def test_python_syntax(ev: Evaluator, text: str, expected: Any) -> None:
    assert evaluate(ev, text) == expected


def test_comprehension_variables_do_not_leak(ev: Evaluator) -> None:
    assert evaluate(ev, "[a for a in items]") == [3, 1, 2]
    assert evaluate(ev, "([a for a in items], a)") == ([3, 1, 2], 7)
    with pytest.raises(UnknownVariableError):
        evaluate(ev, "([i for i in items], i)")


def test_generator_short_circuits(ev: Evaluator) -> None:
    # The division by zero is never reached because any() stops at the first true value.
    assert evaluate(ev, "any(10 / i > 1 for i in [1, 0])") is True


def test_generator_expression_result_is_a_list(ev: Evaluator) -> None:
    assert evaluate(ev, "(i + 1 for i in items)") == [4, 2, 3]
    assert evaluate(ev, "[(i for i in items)]") == [[3, 1, 2]]
    assert evaluate(ev, "{'k': (i for i in items)}") == {"k": [3, 1, 2]}
    assert evaluate(ev, "sorted(i for i in items)") == [1, 2, 3]
    assert evaluate(ev, "'-'.join(str(i) for i in items)") == "3-1-2"
    assert evaluate(ev, "sum(start=1, *[(i for i in items)])") == 7


def test_generator_passed_to_a_registered_function_is_budgeted() -> None:
    custom = Evaluator({"consume": lambda values: sum(1 for _ in values)}, max_iterations=10)
    assert custom.evaluate("consume(i for i in range(10))", {}) == 10
    with pytest.raises(UnsafeExpressionError, match="iterations"):
        custom.evaluate("consume(i for i in range(11))", {})


def test_bool_ops_return_operands_in_python_mode(ev: Evaluator) -> None:
    assert evaluate(ev, "name and amount") == 2500
    assert evaluate(ev, "empty_text or nothing or 'x'") == "x"
    assert evaluate(ev, "a and b and 3") == 0


# --------------------------------------------------------------------------------------------
# Built-in functions, methods and attributes
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("len(items)", 3),
        ("str(amount)", "2500"),
        ("int('42')", 42),
        ("int('ff', 16)", 255),
        ("float('1.5')", 1.5),
        ("bool(x)", False),
        ("abs(-3)", 3),
        ("min(items)", 1),
        ("max(items)", 3),
        ("min(4, 5, a)", 4),
        ("max([], default=0)", 0),
        ("round(2.567, 2)", 2.57),
        ("round(2.5)", 2),
        ("sum(items)", 6),
        ("sum(items, 10)", 16),
        ("sorted(items)", [1, 2, 3]),
        ("sorted(items, reverse=True)", [3, 2, 1]),
        ("any([])", False),
        ("all([])", True),
        ("list('ab')", ["a", "b"]),
        ("tuple(items)", (3, 1, 2)),
        ("set(items)", {1, 2, 3}),
        ("dict(a=1, b=2)", {"a": 1, "b": 2}),
        ("dict([('k', 1)])", {"k": 1}),
        ("list(range(3))", [0, 1, 2]),
        ("list(range(1, 10, 4))", [1, 5, 9]),
        ("Decimal('1.10') + Decimal('2.20')", Decimal("3.30")),
        ("price * 2", Decimal("39.80")),
        ("date(2027, 1, 2)", dt.date(2027, 1, 2)),
        ("datetime(2027, 1, 2, 3, 4)", dt.datetime(2027, 1, 2, 3, 4)),
        ("timedelta(hours=2)", dt.timedelta(hours=2)),
        ("due + timedelta(days=1)", dt.datetime(2027, 2, 1, 8, 30, 15)),
        ("is_empty(x)", True),
        ("is_empty(nothing)", True),
        ("is_empty(empty_text)", True),
        ("is_empty({})", True),
        ("is_empty(items)", False),
        ("is_empty(0)", False),
        ("name.lower()", "alice"),
        ("name.upper()", "ALICE"),
        ("'  pad '.strip()", "pad"),
        ("'xxpadxx'.lstrip('x')", "padxx"),
        ("'xxpadxx'.rstrip('x')", "xxpad"),
        ("name.startswith('Al')", True),
        ("name.endswith('ce')", True),
        ("'a,b'.split(',')", ["a", "b"]),
        ("'-'.join(['a', 'b'])", "a-b"),
        ("name.replace('A', 'a')", "alice"),
        ("name.find('i')", 2),
        ("'banana'.count('a')", 3),
        ("'123'.isdigit()", True),
        ("'abc'.isalpha()", True),
        ("'hello world'.title()", "Hello World"),
        ("'hello'.capitalize()", "Hello"),
        ("'7'.zfill(3)", "007"),
        ("items.index(1)", 1),
        ("items.count(3)", 1),
        ("order.get('missing', 'dflt')", "dflt"),
        ("order.get('amount')", 1200),
        ("sorted(order['customer'].keys())", ["name", "vip"]),
        ("list(order['customer'].values())", ["Bob", True]),
        ("due.isoformat()", "2027-01-31T08:30:15"),
        ("due.year", 2027),
        ("due.month", 1),
        ("due.day", 31),
        ("due.hour", 8),
        ("due.minute", 30),
        ("due.second", 15),
        ("due.weekday()", 6),
        ("due.date()", dt.date(2027, 1, 31)),
        ("day.isoformat()", "2027-03-01"),
        ("day.weekday()", 0),
        ("day.year", 2027),
        ("wait.days", 2),
        ("wait.total_seconds()", 172830.0),
    ],
)
def test_builtins_and_methods(ev: Evaluator, text: str, expected: Any) -> None:
    assert evaluate(ev, text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "name.encode()",
        "items.append(1)",
        "items.pop()",
        "order.update({})",
        "order.clear()",
        "order.setdefault('a', 1)",
        "name.center(10)",
        "due.replace(year=1)",
        "due.astimezone()",
        "name.format(1)",
        "name.format_map({})",
    ],
)
def test_other_methods_are_refused(ev: Evaluator, text: str) -> None:
    with pytest.raises(UnsafeExpressionError):
        evaluate(ev, text)


def test_methods_are_checked_against_the_value_type(ev: Evaluator) -> None:
    # 'index' is allowed on lists but not on strings (the string version is not whitelisted).
    with pytest.raises(UnsafeExpressionError, match="'index' is not allowed on 'str'"):
        evaluate(ev, "name.index('A')")


@pytest.mark.parametrize("text", ["items.real", "amount.numerator", "due.tzinfo", "name.x", "price.imag"])
def test_attributes_of_non_mappings_are_refused(ev: Evaluator, text: str) -> None:
    with pytest.raises(UnsafeExpressionError, match="not accessible"):
        evaluate(ev, text)


def test_missing_key_through_attribute_in_python_mode(ev: Evaluator) -> None:
    with pytest.raises(ExpressionError, match="key 'missing' not found"):
        evaluate(ev, "order.missing")


def test_registered_functions_and_override() -> None:
    calls: list[Any] = []

    def lookup(code: str) -> str:
        calls.append(code)
        return code.upper()

    custom = Evaluator({"lookup": lookup, "len": lambda value: 99})
    assert custom.evaluate("lookup(name)", {"name": "ab"}) == "AB"
    assert custom.evaluate("${lookup('x')}", {}) == "X"
    assert custom.evaluate("len('abc')", {}) == 99
    assert calls == ["ab", "x"]


def test_registered_function_failure_is_wrapped() -> None:
    def broken() -> None:
        raise RuntimeError("backend down")

    custom = Evaluator({"broken": broken})
    with pytest.raises(ExpressionError, match="function 'broken' failed: backend down") as info:
        custom.evaluate("broken()", {})
    assert isinstance(info.value.__cause__, RuntimeError)


@pytest.mark.parametrize("name", ["open", "eval", "_private", "__import__", "true", "not an identifier"])
def test_reserved_function_names_cannot_be_registered(name: str) -> None:
    with pytest.raises(ValueError, match=r"reserved|identifier"):
        Evaluator({name: lambda: None})


def test_function_names_are_not_values(ev: Evaluator) -> None:
    with pytest.raises(ExpressionError, match="function 'len' can only be called"):
        evaluate(ev, "len")
    # ...but a variable of the same name is fine.
    assert ev.evaluate("len + 1", {"len": 1}) == 2


def test_variables_may_use_names_of_refused_builtins(ev: Evaluator) -> None:
    # 'type' is a common process variable name; it never resolves to Python's builtin.
    assert ev.evaluate("type == 'urgent'", {"type": "urgent"}) is True
    with pytest.raises(UnknownVariableError):
        ev.evaluate("type", {})
    with pytest.raises(UnsafeExpressionError):
        ev.evaluate("type(1)", {"type": "urgent"})


def test_variables_are_not_callable(ev: Evaluator) -> None:
    with pytest.raises(UnsafeExpressionError, match="unknown function 'handler'"):
        ev.evaluate("handler()", {"handler": print})
    with pytest.raises(UnsafeExpressionError, match="not a function"):
        ev.evaluate("[f() for f in fs]", {"fs": [print]})


# --------------------------------------------------------------------------------------------
# JUEL
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${approved}", True),
        ("#{!approved}", False),
        ("${amount > 1000 && level == 'major'}", True),
        ("${amount > 5000 && level == 'major'}", False),
        ("${empty x}", True),
        ("${not empty x}", False),
        ("${empty nothing}", True),
        ("${empty empty_text}", True),
        ("${empty items}", False),
        ("${empty order}", False),
        ("${!empty items}", True),
        ("${rejected || approved}", True),
        ("${rejected or approved}", True),
        ("${approved and rejected}", False),
        ("${not approved}", False),
        ("${a eq 7}", True),
        ("${a ne 7}", False),
        ("${a lt 8}", True),
        ("${a gt 8}", False),
        ("${a le 7}", True),
        ("${a ge 8}", False),
        ("${a != 7}", False),
        ("${a <= 7}", True),
        ("${a >= 7}", True),
        ("${a < 7}", False),
        ("${amount div 1000}", 2.5),
        ("${amount / 1000}", 2.5),
        ("${amount mod 1000}", 500),
        ("${amount % 1000}", 500),
        ("${a * 2 + 1}", 15),
        ("${(a + 1) * 2}", 16),
        ("${-a}", -7),
        ("${a - -1}", 8),
        ("${approved ? 'yes' : 'no'}", "yes"),
        ("${rejected ? 'yes' : a > 1 ? 'big' : 'small'}", "big"),
        ("${nothing == null}", True),
        ("${x == null}", False),
        ("${true}", True),
        ("${false || true}", True),
        ("${'single'}", "single"),
        ('${"double"}', "double"),
        ("${'it\\'s'}", "it's"),
        ("${name + '!'}", "Alice!"),
        ("${1.5 * 2}", 3.0),
        ("${1e3}", 1000.0),
        ("${order.amount}", 1200),
        ("${order.customer.name}", "Bob"),
        ("${order['amount']}", 1200),
        ("${order.lines[1].qty}", 5),
        ("${items[0]}", 3),
        ('${execution.getVariable("level")}', "major"),
        ("${execution.getVariable('missing')}", None),
        ("${execution.hasVariable('level')}", True),
        ("${execution.hasVariable('missing')}", False),
        ("${len(items)}", 3),
        ("${name.upper()}", "ALICE"),
        ("${[1, 2, a]}", [1, 2, 7]),
        ("${{'k': a}}", {"k": 7}),
        ("${{}}", {}),
        ("${  approved  }", True),
        ("  ${approved}  ", True),
        ("${a == 7 == true}", True),
    ],
)
def test_juel(ev: Evaluator, text: str, expected: Any) -> None:
    assert evaluate(ev, text) == expected


def test_juel_boolean_operators_return_booleans(ev: Evaluator) -> None:
    assert evaluate(ev, "${name && amount}") is True
    assert evaluate(ev, "${empty_text || nothing}") is False


def test_juel_missing_map_key_is_null(ev: Evaluator) -> None:
    # Like Camunda's MapELResolver: a missing key of a map is null, not an error.
    assert evaluate(ev, "${order.missing}") is None
    assert evaluate(ev, "${order.missing == null}") is True


def test_juel_unknown_variable(ev: Evaluator) -> None:
    with pytest.raises(UnknownVariableError) as info:
        evaluate(ev, "${missing > 1}")
    assert info.value.name == "missing"
    assert "unknown variable 'missing'" in str(info.value)
    assert "${missing > 1}" in str(info.value)


@pytest.mark.parametrize(
    "text",
    ["${}", "${  }", "${a >}", "${(a}", "${a = 1}", "${a; b}", "${a instanceof b}", "${x -> x}", "${'open}"],
)
def test_juel_syntax_errors(ev: Evaluator, text: str) -> None:
    with pytest.raises(ExpressionError):
        ev.check(text)


@pytest.mark.parametrize(
    "text",
    [
        "${x.__class__}",
        "${__import__('os')}",
        "${''.getClass()}",
        "${execution.setVariable('a', 1)}",
        "${open('f')}",
    ],
)
def test_juel_unsafe(ev: Evaluator, text: str) -> None:
    with pytest.raises(UnsafeExpressionError):
        ev.check(text)


# --------------------------------------------------------------------------------------------
# Templates
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello ${name}", "Hello Alice"),
        ("Hello ${name}!", "Hello Alice!"),
        ("${name} owes ${amount div 100} (${level})", "Alice owes 25.0 (major)"),
        ("#{name}/${a}", "Alice/7"),
        ("Flag: ${approved}", "Flag: True"),
        ("None: ${nothing}", "None: None"),
        ("Braces ${ {'k': 1}['k'] } ok", "Braces 1 ok"),
        ("Quote ${'}'} ok", "Quote } ok"),
        ("Escaped \\${name}", "Escaped ${name}"),
        ("${a}${a}", "77"),
        ("  ${name} x", "  Alice x"),
    ],
)
def test_templates(ev: Evaluator, text: str, expected: str) -> None:
    assert evaluate(ev, text) == expected


@pytest.mark.parametrize("text", ["Hello ${name", "Hello ${}", "Hi ${a >} there"])
def test_template_errors(ev: Evaluator, text: str) -> None:
    with pytest.raises(ExpressionError):
        evaluate(ev, text)


def test_template_unknown_variable(ev: Evaluator) -> None:
    with pytest.raises(UnknownVariableError):
        evaluate(ev, "Hello ${nobody}")


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_text_is_an_error(ev: Evaluator, text: str) -> None:
    with pytest.raises(ExpressionError, match="empty"):
        ev.evaluate(text, {})


def test_unknown_variable_python(ev: Evaluator) -> None:
    with pytest.raises(UnknownVariableError) as info:
        ev.evaluate("amount > 1 and ghost", {"amount": 2})
    assert info.value.name == "ghost"
    assert info.value.expression == "amount > 1 and ghost"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a / b", "division by zero in expression 'a / b'"),
        ("a // b", "division by zero"),
        ("a % b", "division by zero"),
        ("price / 0", "division by zero"),
        ("name < 1", "'str' and 'int' cannot be compared with '<' in expression 'name < 1'"),
        ("order['nope']", "key 'nope' not found"),
        ("items[10]", "index out of range"),
        ("name + 1", "can only concatenate str"),
        ("int('abc')", "invalid literal for int()"),
        ("1 in 5", "cannot use 'in' with 'int'"),
        ("len(1, 2)", "len() takes 1 arguments (2 given)"),
        ("sorted([1, 'a'])", "cannot sort these values"),
        ("date(2027, 2, 30)", "day is out of range"),
    ],
)
def test_runtime_errors_are_wrapped(ev: Evaluator, text: str, message: str) -> None:
    with pytest.raises(ExpressionError) as info:
        evaluate(ev, text)
    assert message in str(info.value)
    assert info.value.expression == text
    assert not isinstance(info.value, UnsafeExpressionError)


def test_syntax_errors(ev: Evaluator) -> None:
    with pytest.raises(ExpressionError, match="invalid syntax") as info:
        ev.check("amount >")
    assert info.value.expression == "amount >"
    with pytest.raises(ExpressionError, match="invalid syntax"):
        ev.check("a = 1")
    with pytest.raises(ExpressionError):
        ev.check("import os")
    with pytest.raises(ExpressionError):
        ev.check("1\x00")


def test_error_message_truncates_long_expressions(ev: Evaluator) -> None:
    text = "ghost == [" + ", ".join(["1"] * 300) + "]"
    with pytest.raises(UnknownVariableError) as info:
        ev.evaluate(text, {})
    message = str(info.value)
    assert message.startswith("unknown variable 'ghost' in expression 'ghost == [1, 1")
    assert message.endswith("...'")
    assert len(message) < 260
    assert info.value.expression == text  # the attribute keeps the full text


def test_errors_pickle(ev: Evaluator) -> None:
    with pytest.raises(UnknownVariableError) as info:
        ev.evaluate("ghost", {})
    restored = pickle.loads(pickle.dumps(info.value))
    assert isinstance(restored, UnknownVariableError)
    assert restored.name == "ghost"
    assert str(restored) == str(info.value)


def test_non_string_expression(ev: Evaluator) -> None:
    with pytest.raises(ExpressionError, match="must be a string"):
        ev.evaluate(42, {})  # type: ignore[arg-type]


def test_check_does_not_evaluate(ev: Evaluator) -> None:
    ev.check("1 / 0")
    ev.check("ghost > 1")
    ev.check("${ghost.anything}")
    ev.check("Hello ${ghost}")
    with pytest.raises(UnsafeExpressionError, match="too large"):
        ev.check("9 ** 9 ** 9")  # arithmetic on literals alone is folded, so a bomb is refused at deploy
    with pytest.raises(UnsafeExpressionError, match="unknown function 'nope'"):
        ev.check("nope(1)")


# --------------------------------------------------------------------------------------------
# Escape attempts and resource bombs
# --------------------------------------------------------------------------------------------

ESCAPES: list[tuple[str, type[ExpressionError]]] = [
    ("__import__('os')", UnsafeExpressionError),
    ("().__class__.__base__.__subclasses__()", UnsafeExpressionError),
    ("x.__class__", UnsafeExpressionError),
    ("getattr(x, '__class__')", UnsafeExpressionError),
    ("open('/etc/passwd')", UnsafeExpressionError),
    ("[c for c in ().__class__.__bases__]", UnsafeExpressionError),
    ("'{0.__class__}'.format(1)", UnsafeExpressionError),
    ("'{0}'.format_map({})", UnsafeExpressionError),
    ("(lambda: 1)()", UnsafeExpressionError),
    ("9**9**9", UnsafeExpressionError),
    ("2**100000", UnsafeExpressionError),
    ("'a'*10**9", UnsafeExpressionError),
    ("[0]*10**9", UnsafeExpressionError),
    ("'x' * 999999999", UnsafeExpressionError),
    ("(" * 10000 + "1" + ")" * 10000, ExpressionError),
    ("(" * 5000 + "1" + ")" * 5000, ExpressionError),
    ("-" * 19000 + "1", ExpressionError),
    ("not " * 4000 + "x", ExpressionError),
    ("1" + " + 1" * 3000, ExpressionError),
    ("x" + ".a" * 6000, ExpressionError),
    ("[" * 250 + "]" * 250, ExpressionError),
    ("${" + "(" * 5000 + "1" + ")" * 5000 + "}", ExpressionError),
    ("${" + "!" * 5000 + "x}", ExpressionError),
    ("eval('1')", UnsafeExpressionError),
    ("exec('1')", UnsafeExpressionError),
    ("compile('1', 'f', 'eval')", UnsafeExpressionError),
    ("globals()", UnsafeExpressionError),
    ("locals()", UnsafeExpressionError),
    ("vars()", UnsafeExpressionError),
    ("setattr(x, 'a', 1)", UnsafeExpressionError),
    ("type(1)", UnsafeExpressionError),
    ("object()", UnsafeExpressionError),
    ("f'{x}'", UnsafeExpressionError),
    ("(x := 1)", UnsafeExpressionError),
    ("(yield)", UnsafeExpressionError),
    ("__builtins__", UnsafeExpressionError),
    ("x._private", UnsafeExpressionError),
    ("(i for i in x).gi_frame", UnsafeExpressionError),
    ("x.mro()", UnsafeExpressionError),
    ("'%s' % x", UnsafeExpressionError),
    ("'%0999999999d' % 1", UnsafeExpressionError),
    ("1 << 10**6", UnsafeExpressionError),
    ("10.0 ** 400", UnsafeExpressionError),
    ("int('9' * 5000)", UnsafeExpressionError),
    ("int(Decimal('1e99999'))", UnsafeExpressionError),
    ("range(10**18)", UnsafeExpressionError),
    ("list(range(10**6))", UnsafeExpressionError),
    ("[*range(10**6)]", UnsafeExpressionError),
    ("len([i for i in range(10**6)])", UnsafeExpressionError),
    ("[i for i in range(1000) for j in range(1000)]", UnsafeExpressionError),
    ("sum(range(10**6))", UnsafeExpressionError),
    ("max(*range(10**6))", UnsafeExpressionError),
    ("[[[0] * 1000] * 1000] * 1000", UnsafeExpressionError),
    ("[[0] * 1000 for i in range(100000)]", UnsafeExpressionError),
    ("sum([[1] * 1000] * 1000, [])", UnsafeExpressionError),
    ("str([['a' * 1000] * 1000] * 100)", UnsafeExpressionError),
    ("'-'.join(['ab'] * 900000)", UnsafeExpressionError),
    ("'ab'.replace('', 'x' * 1000000)", UnsafeExpressionError),
    ("'a'.zfill(10**9)", UnsafeExpressionError),
    ("[('a' * 1000000).upper() for i in range(100)]", UnsafeExpressionError),
    ("('a' * 1000000) + ('b' * 1000000)", UnsafeExpressionError),
    ("${x.getClass().forName('java.lang.Runtime')}", UnsafeExpressionError),
    ("Hello ${x.__class__}", UnsafeExpressionError),
    ("'x' * 10**5 + 'y' * (10**6 - 10**5 + 1)", UnsafeExpressionError),
    ("1 @ 2", UnsafeExpressionError),
]


@pytest.mark.parametrize(("text", "error"), ESCAPES, ids=[text[:40] for text, _ in ESCAPES])
def test_escape_attempts_are_refused(ev: Evaluator, text: str, error: type[ExpressionError]) -> None:
    started = time.perf_counter()
    with pytest.raises(error) as info:
        ev.evaluate(text, {"x": 1})
    assert time.perf_counter() - started < 1.0
    if error is ExpressionError:
        assert type(info.value) in (ExpressionError, UnsafeExpressionError)
    assert info.value.expression == text


def test_shared_reference_amplification_is_bounded(ev: Evaluator) -> None:
    # Each list is small, but comparing the two would touch a billion elements.
    text = "[[[1] * 1000] * 1000 for i in range(10)] == [[[1] * 1000] * 1000 for i in range(10)]"
    started = time.perf_counter()
    with pytest.raises(UnsafeExpressionError):
        ev.evaluate(text, {})
    assert time.perf_counter() - started < 1.0


def test_side_effects_never_happen(ev: Evaluator, tmp_path: Path) -> None:
    sentinel = tmp_path / "sentinel"
    path = str(sentinel)
    attempts = [
        f"open({path!r}, 'w')",
        f"__import__('os').system('touch {path}')",
        f"__import__('pathlib').Path({path!r}).touch()",
        f"${{open('{path}', 'w')}}",
    ]
    for text in attempts:
        with pytest.raises(UnsafeExpressionError):
            ev.evaluate(text, {"path": path})
    scripts = [
        f"f = open({path!r}, 'w')",
        f"import os\nos.system('touch {path}')",
        f"x = __import__('os').system('touch {path}')",
        "f = open(path, 'w')",
        "with open(path, 'w') as f: pass",
    ]
    for script in scripts:
        variables: dict[str, Any] = {"path": path}
        with pytest.raises(UnsafeExpressionError):
            ev.execute_script(script, variables)
        assert variables == {"path": path}
    assert not sentinel.exists()


def test_limits_are_configurable() -> None:
    with pytest.raises(ExpressionError, match="too long"):
        Evaluator(max_length=10).check("a" * 11)
    Evaluator(max_length=10).check("a" * 10)
    with pytest.raises(ExpressionError, match="too complex"):
        Evaluator(max_nodes=10).check("[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]")
    with pytest.raises(ExpressionError, match="too complex"):
        Evaluator(max_nodes=10).check_script("a = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]")
    small = Evaluator(max_int_bits=64, max_sequence_length=10, max_iterations=5)
    with pytest.raises(UnsafeExpressionError, match="64 bits"):
        small.evaluate("2 ** 40", {})
    assert small.evaluate("2 ** 30", {}) == 2**30
    with pytest.raises(UnsafeExpressionError, match="64 bits"):
        small.evaluate("x * x", {"x": 2**40})
    with pytest.raises(UnsafeExpressionError, match="limit is 10"):
        small.evaluate("'ab' * 6", {})
    assert small.evaluate("'ab' * 5", {}) == "ab" * 5
    with pytest.raises(UnsafeExpressionError, match="iterations"):
        small.evaluate("[i for i in x]", {"x": list(range(6))})
    assert small.evaluate("[i for i in x]", {"x": list(range(5))}) == list(range(5))


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "10"])
def test_invalid_limits(bad: Any) -> None:
    with pytest.raises(ValueError):
        Evaluator(max_length=bad)


def test_ints_near_the_limit_are_fine(ev: Evaluator) -> None:
    assert evaluate(ev, "2 ** 2048") == 2**2048
    assert evaluate(ev, "1 ** 10**9") == 1
    assert evaluate(ev, "(-1) ** 10**9") == 1
    assert evaluate(ev, "0 ** 10**9") == 0
    assert evaluate(ev, "2 ** -2") == 0.25
    assert len(evaluate(ev, "'a' * 1000000")) == 1_000_000
    assert len(evaluate(ev, "[0] * 1000000")) == 1_000_000


# --------------------------------------------------------------------------------------------
# Scripts
# --------------------------------------------------------------------------------------------


def test_script_assignments() -> None:
    ev = Evaluator()
    order = {"amount": 5, "lines": [1, 2]}
    variables: dict[str, Any] = {"order": order, "count": 1, "keep": "same"}
    script = """
    # a comment

    total = order.amount * 2   # trailing comment
    first = second = 'both'
    left, right = 1, 2
    [p, q] = ['p', 'q']
    count += 10
    count *= 2
    order['status'] = 'ok'
    order.note = 'hi'
    order.amount += 1
    order['lines'][0] = 99
    temp = 1
    del temp
    pass
    """
    changed = ev.execute_script(script, variables)
    assert changed == {
        "total": 10,
        "first": "both",
        "second": "both",
        "left": 1,
        "right": 2,
        "p": "p",
        "q": "q",
        "count": 22,
        "order": {"amount": 6, "lines": [99, 2], "status": "ok", "note": "hi"},
    }
    assert variables == {**changed, "keep": "same"}
    # The caller's original object is never modified in place.
    assert order == {"amount": 5, "lines": [1, 2]}


def test_script_delete_removes_variables() -> None:
    ev = Evaluator()
    variables: dict[str, Any] = {"a": 1, "b": 2}
    assert ev.execute_script("del a\nc = b", variables) == {"c": 2}
    assert variables == {"b": 2, "c": 2}


def test_script_statements_see_earlier_assignments() -> None:
    ev = Evaluator()
    variables: dict[str, Any] = {}
    result = ev.execute_script("a = 2\nb = a * 3\nc = [b for i in range(2)]\na = a + 1", variables)
    assert result == {"a": 3, "b": 6, "c": [6, 6]}
    assert variables == result


def test_script_uses_the_same_interpreter() -> None:
    ev = Evaluator()
    variables: dict[str, Any] = {"items": [1, 2, 3], "order": {"amount": 10}}
    result = ev.execute_script(
        "big = [i for i in items if i > 1]\nflag = order.amount > 5 and true\nlabel = 'n=' + str(len(big))",
        variables,
    )
    assert result == {"big": [2, 3], "flag": True, "label": "n=2"}


def test_failing_script_leaves_variables_untouched() -> None:
    ev = Evaluator()
    order = {"amount": 5}
    variables: dict[str, Any] = {"order": order, "a": 1}
    with pytest.raises(ExpressionError, match="line 3: division by zero") as info:
        ev.execute_script("a = 2\norder['x'] = 1\nb = 1 / 0", variables)
    assert info.value.expression == "a = 2\norder['x'] = 1\nb = 1 / 0"
    assert "in script" in str(info.value)
    assert variables == {"order": {"amount": 5}, "a": 1}
    assert order == {"amount": 5}


@pytest.mark.parametrize(
    ("script", "line", "kind"),
    [
        ("import os", 1, "import"),
        ("from os import system", 1, "import"),
        ("a = 1\nb = 2\nimport os", 3, "import"),
        ("def f(): pass", 1, "def"),
        ("async def f(): pass", 1, "async def"),
        ("class A: pass", 1, "class"),
        ("for i in range(10**9): pass", 1, "for"),
        ("while True: pass", 1, "while"),
        ("a = 1\nif a:\n    b = 2", 2, "if"),
        ("with open('x') as f: pass", 1, "with"),
        ("try:\n    pass\nexcept Exception:\n    pass", 1, "try"),
        ("return 1", 1, "return"),
        ("raise ValueError()", 1, "raise"),
        ("assert False", 1, "assert"),
        ("global a", 1, "global"),
        ("print('hi')", 1, "expression statement"),
        ("len([])", 1, "expression statement"),
        ("x: int = 1", 1, "annotated assignment"),
    ],
)
def test_script_statements_are_refused(script: str, line: int, kind: str) -> None:
    ev = Evaluator()
    with pytest.raises(UnsafeExpressionError) as info:
        ev.check_script(script)
    assert f"line {line}: '{kind}' is not allowed; scripts may only assign expressions" in str(info.value)
    with pytest.raises(UnsafeExpressionError):
        ev.execute_script(script, {})


@pytest.mark.parametrize(
    "script",
    [
        "x = __import__('os').system('true')",
        "x = lambda: 1",
        "x = (y := 1)",
        "__class__ = 1",
        "x.__class__ = 1",
        "x['a'].__dict__ = 1",
        "a, *b = [1, 2]",
        "x[1:2] = [0]",
        "[1][0] = 2",
        "del x['a']",
        "x = open('f')",
        "x = f'{1}'",
        "x = 1\ny = type(x)",
    ],
)
def test_script_unsafe_parts(script: str) -> None:
    ev = Evaluator()
    with pytest.raises(UnsafeExpressionError):
        ev.check_script(script)


@pytest.mark.parametrize(
    "script",
    ["", "   \n  ", "# only a comment\n", "a = ", "a = 1 +", "${a} = 1"],
)
def test_script_syntax_and_empty(script: str) -> None:
    ev = Evaluator()
    with pytest.raises(ExpressionError):
        ev.check_script(script)


def test_script_runtime_errors() -> None:
    ev = Evaluator()
    with pytest.raises(UnknownVariableError, match="line 2: unknown variable 'ghost'"):
        ev.execute_script("a = 1\nb = ghost", {})
    with pytest.raises(UnknownVariableError):
        ev.execute_script("ghost += 1", {})
    with pytest.raises(ExpressionError, match="cannot unpack"):
        ev.execute_script("a, b = [1, 2, 3]", {})
    with pytest.raises(UnsafeExpressionError, match="only maps support attribute assignment"):
        ev.execute_script("n.x = 1", {"n": 5})
    with pytest.raises(ExpressionError, match="cannot assign items"):
        ev.execute_script("t[0] = 1", {"t": (1, 2)})
    with pytest.raises(ExpressionError, match="cannot assign to 'true'"):
        ev.check_script("true = 1")


def test_script_resource_limits() -> None:
    ev = Evaluator()
    started = time.perf_counter()
    doubling = "s = 'ab'\n" + "s = s + s\n" * 40
    with pytest.raises(UnsafeExpressionError):
        ev.execute_script(doubling, {})
    squaring = "n = 3\n" + "n = n * n\n" * 30
    with pytest.raises(UnsafeExpressionError):
        ev.execute_script(squaring, {})
    nesting = "a = [0]\n" + "a = [a] * 1000\n" * 5
    with pytest.raises(UnsafeExpressionError):
        ev.execute_script(nesting, {})
    cycle = "a = {'self': []}\na['self'] += [a]"
    with pytest.raises(UnsafeExpressionError, match="self-referencing"):
        ev.execute_script(cycle, {})
    assert time.perf_counter() - started < 2.0


def test_script_item_assignment_copies_before_mutating() -> None:
    # The right-hand side is evaluated first, so this stores the old value: no cycle is built.
    ev = Evaluator()
    assert ev.execute_script("a = {}\na['self'] = a", {}) == {"a": {"self": {}}}
    shared: dict[str, Any] = {"n": 1}
    variables: dict[str, Any] = {"x": shared}
    assert ev.execute_script("y = x\ny['n'] = 2", variables) == {"y": {"n": 2}}
    assert shared == {"n": 1}
    assert variables["x"] is shared


def test_long_flat_and_moderately_nested_expressions(ev: Evaluator) -> None:
    assert ev.evaluate(" + ".join(["1"] * 150), {}) == 150
    assert ev.evaluate("(" * 150 + "1" + ")" * 150, {}) == 1
    assert ev.evaluate("len([" + ", ".join(["1"] * 2000) + "])", {}) == 2000
    with pytest.raises(ExpressionError, match="nested too deeply"):
        ev.evaluate(" + ".join(["1"] * 400), {})


def test_script_generator_values_are_materialized() -> None:
    ev = Evaluator()
    assert ev.execute_script("g = (i * 2 for i in range(3))", {}) == {"g": [0, 2, 4]}


def test_script_indented_block_is_dedented() -> None:
    ev = Evaluator()
    assert ev.execute_script("\n        a = 1\n        b = a + 1\n    ", {}) == {"a": 1, "b": 2}


def test_script_non_string() -> None:
    with pytest.raises(ExpressionError, match="must be a string"):
        Evaluator().check_script(None)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# Caching and speed
# --------------------------------------------------------------------------------------------


def test_compiled_expressions_are_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    original = expressions._parse_python

    def counting(text: str, mode: str) -> Any:
        calls.append(text)
        return original(text, mode)

    monkeypatch.setattr(expressions, "_parse_python", counting)
    ev = Evaluator()
    for _ in range(3):
        assert ev.evaluate("amount > 1000 and approved", {"amount": 5000, "approved": True}) is True
        ev.check("amount > 1000 and approved")
    assert calls == ["amount > 1000 and approved"]
    for _ in range(3):
        ev.execute_script("a = 1", {})
    assert calls == ["amount > 1000 and approved", "a = 1"]


def test_simple_condition_is_fast() -> None:
    ev = Evaluator()
    variables = {"amount": 5000, "approved": True, "level": "major"}
    text = "amount > 1000 and approved"
    juel = "${amount > 1000 && level == 'major'}"
    ev.evaluate(text, variables)
    ev.evaluate(juel, variables)
    runs = 10_000
    started = time.perf_counter()
    for _ in range(runs):
        ev.evaluate(text, variables)
    python_us = (time.perf_counter() - started) / runs * 1e6
    started = time.perf_counter()
    for _ in range(runs):
        ev.evaluate(juel, variables)
    juel_us = (time.perf_counter() - started) / runs * 1e6
    print(f"\n{text!r}: {python_us:.2f} us/evaluation; {juel!r}: {juel_us:.2f} us/evaluation")
    assert python_us < 200
    assert juel_us < 200
