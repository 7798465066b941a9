"""Tests of the `{{=expression}}` evaluator: expr-lang over Argo's env, as Argo evaluates it."""

from __future__ import annotations

import math
from typing import Any

import pytest

from workflows.exceptions import RunError
from workflows.local.expr import (
    ExprError,
    evaluate,
    expression_env,
    render_result,
    substitute_expressions,
)
from workflows.local.expr import _values as expr_functions

SCOPE = {
    "inputs.parameters.should-print": "true",
    "inputs.parameters.x": "2",
    "inputs.parameters.name": "World",
    "workflow.name": "wf-1",
    "workflow.parameters": '[{"name":"json"}]',
    "workflow.parameters.json": '[{"name":"should-print","value":"true"}]',
    "workflow.parameters.data": "",
    "tasks.A.outputs.result": "heads",
    "tasks.A.outputs.parameters.count": "3",
    "item": '{"name":"a","size":2}',
    "item.name": "a",
    "item.size": "2",
}


@pytest.fixture
def env() -> dict[str, Any]:
    return expression_env(SCOPE)


def run(expression: str, **variables: Any) -> Any:
    return evaluate(expression, expression_env(SCOPE) | variables)


def fails(expression: str, **variables: Any) -> str:
    with pytest.raises(ExprError) as caught:
        run(expression, **variables)
    return str(caught.value)


# --- the cases from Argo's own e2e workflows ------------------------------------------------


def test_argo_bracket_access_to_a_dashed_parameter() -> None:
    assert run("inputs.parameters['should-print'] == 'true'") is True


def test_argo_jsonpath_of_a_workflow_parameter() -> None:
    assert run("jsonpath(workflow.parameters.json, '$[0].value') == 'true'") is True


def test_argo_empty_parameter_compares_and_jsonpath_of_it_fails() -> None:
    assert run("workflow.parameters.data != ''") is False
    message = fails("jsonpath(workflow.parameters.data, '$.id')")
    assert "unexpected end of JSON input" in message
    assert "jsonpath(workflow.parameters.data, '$.id')" in message


def test_argo_as_int_then_arithmetic_renders_as_a_number() -> None:
    value = run("asInt(inputs.parameters.x) + 1")
    assert value == 3 and isinstance(value, int)
    assert render_result(value) == "3"


def test_argo_ternary_on_a_task_result() -> None:
    assert run("tasks.A.outputs.result == 'heads' ? 'h' : 't'") == "h"
    assert run("tasks.A.outputs.result == 'tails' ? 'h' : 't'") == "t"


# --- the env --------------------------------------------------------------------------------


def test_env_nests_dotted_keys_and_keeps_strings(env: dict[str, Any]) -> None:
    assert env["inputs"]["parameters"]["should-print"] == "true"
    assert env["tasks"]["A"]["outputs"]["parameters"]["count"] == "3"
    assert env["workflow"]["name"] == "wf-1"


def test_env_drops_a_key_that_another_key_extends(env: dict[str, Any]) -> None:
    assert set(env["workflow"]["parameters"]) == {"json", "data"}


def test_env_drops_the_parent_even_when_a_sibling_sorts_between() -> None:
    env = expression_env({"a": "1", "a-b": "2", "a.c": "3"})
    assert env["a"] == {"c": "3"}
    assert env["a-b"] == "2"


def test_env_map_item_becomes_a_map_of_strings(env: dict[str, Any]) -> None:
    assert env["item"] == {"name": "a", "size": "2"}
    assert run("item.size") == "2"


def test_env_list_item_stays_json_text() -> None:
    env = expression_env({"item": "[1,2]"})
    assert env["item"] == "[1,2]"
    assert evaluate("fromJSON(item)[1]", env) == 2.0


def test_env_has_argo_functions_over_scope_keys() -> None:
    env = expression_env({"sprig": "x", "asInt": "y"})
    assert callable(env["asInt"]) and callable(env["asFloat"])
    assert callable(env["jsonpath"]) and callable(env["toJson"])
    assert callable(env["sprig"]["upper"])


def test_env_sprig_table_is_a_copy_per_env() -> None:
    first, second = expression_env({}), expression_env({})
    first["sprig"]["upper"] = None
    assert callable(second["sprig"]["upper"])
    assert evaluate("sprig.upper('a')", second) == "A"


def test_env_offers_every_sprig_name_but_env_and_expandenv(env: dict[str, Any]) -> None:
    assert {"upper", "uuidv4", "semverCompare", "regexMatch"} <= set(env["sprig"])
    assert "env" not in env["sprig"] and "expandenv" not in env["sprig"]


# --- literals -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("42", 42),
        ("0x2A", 42),
        ("0o52", 42),
        ("0b101010", 42),
        ("1_000_000", 1000000),
        ("007", 7),
        ("0.5", 0.5),
        (".5", 0.5),
        ("1e3", 1000.0),
        ("2.5e-1", 0.25),
        ("true", True),
        ("false", False),
        ("nil", None),
        ("'single'", "single"),
        ('"double"', "double"),
        ("`raw \\n ${x}`", "raw \\n ${x}"),
        ("`a``b`", "a`b"),
        (r"'a\nb\tc'", "a\nb\tc"),
        (r"'it\'s'", "it's"),
        (r'"say \"hi\""', 'say "hi"'),
        (r"'\x41\101\u00e9\U0001F600\u{1F600}'", "AAé😀😀"),
        (r"'\\'", "\\"),
        ("'héllo'", "héllo"),
        ("[1, 'a', nil]", [1, "a", None]),
        ("[1, 2,]", [1, 2]),
        ("[]", []),
        (
            "{a: 1, 'b c': 2, \"d\": 3, 4: 5, 1.50: 6}",
            {"a": 1, "b c": 2, "d": 3, "4": 5, "1.50": 6},
        ),
        ("{a: 1, a: 2}", {"a": 1}),
        ("{}", {}),
        ("{a: {b: [1]}}", {"a": {"b": [1]}}),
        ("1 /* a comment */ + 1 // another", 2),
    ],
)
def test_literal(expression: str, expected: Any) -> None:
    value = run(expression)
    assert value == expected
    assert type(value) is type(expected)


def test_map_key_from_a_parenthesised_expression_must_be_a_string() -> None:
    assert run("{('a' + 'b'): 1}") == {"ab": 1}
    assert "a map key is a int, not a string" in fails("{(1 + 1): 6}")


@pytest.mark.parametrize(
    ("expression", "error"),
    [
        ("'abc", "literal not terminated"),
        ("'a\nb'", "literal not terminated"),
        ("`abc", "literal not terminated"),
        (r"'\q'", "invalid char escape"),
        (r'"\'"', "invalid char escape"),
        (r"'\uD800'", "invalid unicode code point"),
        ("1abc", "bad number syntax"),
        ("0x", "invalid number"),
        ("9223372036854775808", "too large"),
        ("1e999", "invalid number"),
        ("1 @ 2", "unrecognized character '@'"),
        ("/* open", "unclosed comment"),
    ],
)
def test_bad_literal(expression: str, error: str) -> None:
    assert error in fails(expression)


# --- operators ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("2 ** 3 ** 2", 512.0),
        ("2 ^ 3", 8.0),
        ("-2 ** 2", -4.0),
        ("10 - 4 - 3", 3),
        ("7 / 2", 3.5),
        ("6 / 3", 2.0),
        ("7 % 3", 1),
        ("-7 % 3", -1),
        ("7 % -3", 1),
        ("1 + 2.5", 3.5),
        ("2 * 1.5", 3.0),
        ("-(3)", -3),
        ("+3", 3),
        ("'a' + 'b'", "ab"),
        ("9223372036854775807 + 1", -9223372036854775808),
        ("1 / 0", math.inf),
        ("-1 / 0", -math.inf),
        ("1..3", [1, 2, 3]),
        ("3..1", []),
    ],
)
def test_arithmetic(expression: str, expected: Any) -> None:
    value = run(expression)
    assert value == expected
    assert type(value) is type(expected)


def test_zero_divided_by_zero_is_nan() -> None:
    assert math.isnan(run("0 / 0"))


@pytest.mark.parametrize(
    ("expression", "error"),
    [
        ("'a' + 1", "invalid operation: string + int"),
        ("1 - 'a'", "invalid operation: int - string"),
        ("7.5 % 2", "invalid operation: float64 % int"),
        ("7 % 0", "integer divide by zero"),
        ("-'a'", "invalid operation: - string"),
        ("true + 1", "invalid operation: bool + int"),
        ("nil + 1", "invalid operation: <nil> + int"),
    ],
)
def test_arithmetic_error(expression: str, error: str) -> None:
    assert error in fails(expression)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("1 == 1.0", True),
        ("'1' == 1", False),
        ("nil == nil", True),
        ("nil == false", False),
        ("true == 1", False),
        ("[1, 2] == [1.0, 2.0]", True),
        ("[1, 2] == [1, 2, 3]", False),
        ("{a: 1} == {a: 1}", True),
        ("{a: 1} == {a: 1.0}", False),
        ("'a' != 'b'", True),
        ("1 < 2", True),
        ("2 <= 2.0", True),
        ("'abc' < 'abd'", True),
        ("'b' > 'a'", True),
        ("1 < 2 < 3", True),
        ("1 < 3 < 2", False),
        ("3 > 2 >= 2", True),
    ],
)
def test_comparison(expression: str, expected: bool) -> None:
    assert run(expression) is expected


@pytest.mark.parametrize("expression", ["1 < 'a'", "nil > 1", "true < false", "[1] < [2]"])
def test_ordering_different_types_fails(expression: str) -> None:
    assert "invalid operation" in fails(expression)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("true and false", False),
        ("true && true", True),
        ("false or true", True),
        ("false || false", False),
        ("not true", False),
        ("!false", True),
        ("not (1 > 2)", True),
        ("true || 1 / 'x'", True),
        ("false && 1 / 'x'", False),
        ("true and false or true", True),
        ("true or false and false", True),
        ("not false and false", False),
    ],
)
def test_logic(expression: str, expected: bool) -> None:
    assert run(expression) is expected


@pytest.mark.parametrize(
    ("expression", "error"),
    [
        ("'true' && true", "invalid operation: string && ... (expected a bool)"),
        ("nil or true", "expected a bool"),
        ("not 'x'", "invalid operation: not string (expected a bool)"),
        ("!1", "invalid operation: ! int"),
        ("inputs.parameters['should-print'] ? 1 : 2", "a condition is a string, not a bool"),
    ],
)
def test_logic_needs_bools(expression: str, error: str) -> None:
    assert error in fails(expression)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("'a' in ['a', 'b']", True),
        ("'c' in ['a', 'b']", False),
        ("1 in [1.0]", True),
        ("'c' not in ['a', 'b']", True),
        ("'a' in {a: 1}", True),
        ("'b' in {a: 1}", False),
        ("'x' in nil", False),
        ("'World' in inputs.parameters", False),
        ("'name' in inputs.parameters", True),
        ("'hello world' contains 'lo w'", True),
        ("'hello' not contains 'z'", True),
        ("'hello' startsWith 'he'", True),
        ("'hello' endsWith 'lo'", True),
        ("'hello' not startsWith 'he'", False),
        ("'abc123' matches '^[a-z]+[0-9]+$'", True),
        ("'abc' matches 'b'", True),
        ("'abc' not matches 'z'", True),
        ("nil matches 'a'", False),
        ("nil contains 'a'", False),
    ],
)
def test_membership_and_string_operators(expression: str, expected: bool) -> None:
    assert run(expression) is expected


@pytest.mark.parametrize(
    ("expression", "error"),
    [
        ("1 in 'abc'", 'operator "in" not defined on string'),
        ("1 in {a: 1}", "cannot use a int as a key of a map"),
        ("'a' matches '('", "error parsing regexp"),
        ("1 contains 'a'", "invalid operation: int contains string"),
        ("'a' not 1", "unexpected token '1'"),
    ],
)
def test_membership_errors(expression: str, error: str) -> None:
    assert error in fails(expression)


def test_not_binds_tighter_than_in_as_in_expr() -> None:
    assert "expected a bool" in fails("not 'a' in ['a']")
    assert run("not ('a' in ['a'])") is False


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("true ? 'y' : 'n'", "y"),
        ("false ? 'y' : 'n'", "n"),
        ("1 > 2 ? 'a' : 2 > 1 ? 'b' : 'c'", "b"),
        ("true ? false ? 1 : 2 : 3", 2),
        ("nil ?? 'd'", "d"),
        ("'v' ?? 'd'", "v"),
        ("nil ?? nil ?? 'x'", "x"),
        ("'' ?? 'd'", ""),
        ("(nil ?? 1) + 2", 3),
        ("1 + (nil ?? 2)", 3),
        ("true ?: false", True),
    ],
)
def test_conditionals(expression: str, expected: Any) -> None:
    assert run(expression) == expected


def test_coalesce_cannot_mix_with_other_operators() -> None:
    assert "cannot be mixed" in fails("nil ?? 1 + 2")


# --- member access --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("inputs.parameters.name", "World"),
        ("inputs['parameters']['name']", "World"),
        ("inputs.parameters['name']", "World"),
        ("[10, 20, 30][0]", 10),
        ("[10, 20, 30][-1]", 30),
        ("[10, 20, 30][1.9]", 20),
        ("{a: {b: 'c'}}.a.b", "c"),
        ("{a: 1}.b", None),
        ("{a: 1}['b']", None),
        ("[1, 2, 3, 4, 5][1:4]", [2, 3, 4]),
        ("[1, 2, 3, 4, 5][1:-1]", [2, 3, 4]),
        ("[1, 2, 3, 4, 5][:2]", [1, 2]),
        ("[1, 2, 3, 4, 5][3:]", [4, 5]),
        ("[1, 2, 3][:]", [1, 2, 3]),
        ("[1, 2, 3][-10:10]", [1, 2, 3]),
        ("[1, 2, 3][2:1]", []),
        ("'hello'[1:3]", "el"),
        ("'hello'[0]", 104),
        ("inputs.parameters.name[:1]", "W"),
        ("{a: 1}.in", None),
    ],
)
def test_member_access(expression: str, expected: Any) -> None:
    assert run(expression) == expected


@pytest.mark.parametrize(
    ("expression", "error"),
    [
        ("[1, 2][2]", "index out of range: 2 (array length is 2)"),
        ("[1, 2][-3]", "index out of range: -1 (array length is 2)"),
        ("[1]['a']", "invalid operation: int(string)"),
        ("(1).a", "cannot fetch a from int"),
        ("nil.a", "unexpected token '.'"),
        ("(nil).a", "cannot fetch a from <nil>"),
        ("(1)[1:2]", "cannot slice a int"),
    ],
)
def test_member_access_errors(expression: str, error: str) -> None:
    assert error in fails(expression)


def test_optional_chain_stops_at_nil() -> None:
    assert run("x?.a.b.c", x=None) is None
    assert run("x?.['a']", x=None) is None
    assert run("x?.a", x={"a": 1}) == 1
    assert run("x.a?.b", x={"a": None}) is None
    assert run("x?.a ?? 'd'", x=None) == "d"


def test_optional_chain_does_not_cover_a_missing_middle() -> None:
    assert "cannot fetch b from <nil>" in fails("x?.a.b", x={})


def test_index_after_an_optional_chain_is_outside_it() -> None:
    assert "cannot fetch 0 from <nil>" in fails("x?.a[0]", x=None)


# --- variables the expression needs ---------------------------------------------------------


def test_missing_top_level_name_is_reported_with_what_exists() -> None:
    message = fails("nope + 1")
    assert message.startswith("failed to evaluate expression: nope is missing")
    assert "the scope has: asFloat, asInt, inputs" in message
    assert "{{=nope + 1}}" in message


def test_missing_parameter_names_the_dotted_path_and_its_siblings() -> None:
    message = fails("inputs.parameters.y == 'a'")
    assert "failed to evaluate expression: inputs.parameters.y is missing" in message
    assert "inputs.parameters has: name, should-print, x" in message


def test_missing_path_below_a_string_says_it_is_not_a_map() -> None:
    assert "inputs.parameters.x is a string, not a map" in fails("inputs.parameters.x.y")


def test_missing_path_is_reported_even_on_a_branch_not_taken() -> None:
    assert "tasks.B is missing" in fails("true ? 'a' : tasks.B.outputs.result")


def test_bracket_paths_count_as_member_paths() -> None:
    assert "inputs.parameters.nope is missing" in fails("inputs.parameters['nope']")


def test_coalesce_guards_member_paths_but_not_the_base_name() -> None:
    assert run("inputs.parameters.nope ?? 'd'") == "d"
    assert run("item['missing'] ?? ''") == ""
    assert "nope is missing" in fails("nope ?? 'd'")


def test_coalesce_does_not_make_a_deep_missing_path_nil() -> None:
    message = fails("tasks.B.outputs.result ?? 'd'")
    assert "cannot fetch outputs from <nil>" in message
    assert run("tasks.B?.outputs?.result ?? 'd'") == "d"


def test_optional_chaining_guards_its_receiver() -> None:
    assert run("tasks.B?.outputs") is None
    assert run("item.a?.b") is None


def test_dynamic_index_is_not_checked_before_the_run() -> None:
    assert run("inputs.parameters[k]", k="name") == "World"
    assert run("inputs.parameters[k]", k="nope") is None


def test_unknown_function_is_missing() -> None:
    assert "frobnicate is missing" in fails("frobnicate(1)")
    assert "sprig.frobnicate is missing" in fails("sprig.frobnicate(1)")


def test_string_is_not_an_identifier() -> None:
    assert run("'nope.x' == 'nope.x'") is True


# --- pipes, predicates and builtins ---------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("'a b' | upper()", "A B"),
        ("'a,b' | split(',') | join('-')", "a-b"),
        ("[1, 2, 3] | filter(# > 1) | map(# * 10)", [20, 30]),
        ("[true, false, true] | count()", 2),
    ],
)
def test_pipe(expression: str, expected: Any) -> None:
    assert run(expression) == expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("all([1, 2], # > 0)", True),
        ("all([], # > 0)", True),
        ("all([1, -1], # > 0)", False),
        ("any([1, -1], # < 0)", True),
        ("any([], # < 0)", False),
        ("none([1, 2], # < 0)", True),
        ("one([1, 2], # > 1)", True),
        ("one([2, 2], # > 1)", False),
        ("filter([1, 2, 3, 4], # % 2 == 0)", [2, 4]),
        ("filter([1, 2, 3], {# > 1})", [2, 3]),
        ("map([1, 2, 3], # * 2)", [2, 4, 6]),
        ("map(['a', 'b'], #index)", [0, 1]),
        ("map([{n: 1}, {n: 2}], .n)", [1, 2]),
        ("filter([{n: 1}, {n: 2}], .n > 1)", [{"n": 2}]),
        ("count([1, 2, 3], # > 1)", 2),
        ("count([true, false])", 1),
        ("sum([1, 2, 3])", 6),
        ("sum([1, 2.5])", 3.5),
        ("sum([1, 2], # * 10)", 30),
        ("find([1, 2, 3], # > 1)", 2),
        ("find([1], # > 1)", None),
        ("findIndex([1, 2, 3], # > 1)", 1),
        ("findIndex([1], # > 5)", -1),
        ("findLast([1, 2, 3], # < 3)", 2),
        ("findLastIndex([1, 2, 3], # < 3)", 1),
        ("map([[1, 2], [3]], len(#))", [2, 1]),
        ("map([1, 2], map([10], # + 1))", [[11], [11]]),
        ("filter([1, 2], # > 1,)", [2]),
    ],
)
def test_predicate_builtins(expression: str, expected: Any) -> None:
    assert run(expression) == expected


@pytest.mark.parametrize(
    ("expression", "error"),
    [
        ("filter([1], # + 1)", "the predicate of filter() gave a int, not a bool"),
        ("[1, 2] | count()", "the predicate of count() gave a int, not a bool"),
        ("all('abc', # > 1)", "all() needs an array, not a string"),
        ("map(nil, #)", "map() needs an array, not a <nil>"),
        ("#", "unexpected token '#'"),
        ("map([1], #acc)", "the pointer #acc is not supported"),
        ("filter([1])", "unexpected token ')'"),
        ("filter([1], # > 1; true)", "`;` (a sequence of expressions) is not supported"),
    ],
)
def test_predicate_errors(expression: str, error: str) -> None:
    assert error in fails(expression)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("len([1, 2])", 2),
        ("len({a: 1})", 1),
        ("len('héllo')", 5),
        ("type(1)", "int"),
        ("type(1.5)", "float"),
        ("type('a')", "string"),
        ("type([1])", "array"),
        ("type({})", "map"),
        ("type(nil)", "nil"),
        ("type(true)", "bool"),
        ("abs(-3)", 3),
        ("abs(-2.5)", 2.5),
        ("ceil(1.2)", 2.0),
        ("floor(1.8)", 1.0),
        ("round(2.5)", 3.0),
        ("round(-2.5)", -3.0),
        ("round(1.4)", 1.0),
        ("ceil(2)", 2.0),
        ("int(3.9)", 3),
        ("int(-3.9)", -3),
        ("int('42')", 42),
        ("int('-7')", -7),
        ("float(2)", 2.0),
        ("float('2.5')", 2.5),
        ("float('1e3')", 1000.0),
        ("string(2)", "2"),
        ("string(2.5)", "2.5"),
        ("string(1e6)", "1e+06"),
        ("string(100000.0)", "100000"),
        ("string(0.0001)", "0.0001"),
        ("string(0.00001)", "1e-05"),
        ("string(true)", "true"),
        ("string(nil)", "<nil>"),
        ("string([1, 'a'])", "[1 a]"),
        ("string({b: 2, a: 1})", "map[a:1 b:2]"),
        ("trim('  a  ')", "a"),
        ("trim('__a__', '_')", "a"),
        ("trimPrefix('HelloWorld', 'Hello')", "World"),
        ("trimPrefix(' x')", "x"),
        ("trimSuffix('HelloWorld', 'World')", "Hello"),
        ("upper('abc')", "ABC"),
        ("lower('ABC')", "abc"),
        ("split('a,b,c', ',')", ["a", "b", "c"]),
        ("split('a,b,c', ',', 2)", ["a", "b,c"]),
        ("split('abc', '')", ["a", "b", "c"]),
        ("splitAfter('a,b', ',')", ["a,", "b"]),
        ("replace('aaa', 'a', 'b')", "bbb"),
        ("replace('aaa', 'a', 'b', 2)", "bba"),
        ("repeat('ab', 3)", "ababab"),
        ("join(['a', 'b'], '-')", "a-b"),
        ("join(['a', 'b'])", "ab"),
        ("indexOf('apple pie', 'pie')", 6),
        ("lastIndexOf('apple pie apple', 'apple')", 10),
        ("hasPrefix('abc', 'ab')", True),
        ("hasSuffix('abc', 'bc')", True),
        ("max(1, 5, 3)", 5),
        ("max([1, 7], 3)", 7),
        ("min(2.5, 1)", 1),
        ("min([4, 2, 8])", 2),
        ("max('x')", "x"),
        ("toJSON({b: [1], a: 'x'})", '{\n  "a": "x",\n  "b": [\n    1\n  ]\n}'),
        ("toJSON([])", "[]"),
        ('fromJSON(\'{"a": [1, "b"]}\')', {"a": [1.0, "b"]}),
        ("toBase64('Hello World')", "SGVsbG8gV29ybGQ="),
        ("fromBase64('SGVsbG8gV29ybGQ=')", "Hello World"),
        ("first([1, 2])", 1),
        ("first([])", None),
        ("last([1, 2])", 2),
        ("get([1, 2], 5)", None),
        ("get([1, 2], -1)", 2),
        ("get({a: 1}, 'a')", 1),
        ("get(nil, 'a')", None),
        ("keys({a: 1})", ["a"]),
        ("values({a: 1})", [1]),
        ("reverse([1, 2, 3])", [3, 2, 1]),
        ("uniq([1, 2, 1, 1.0, 'a', 'a'])", [1, 2, "a"]),
        ("concat([1], [2, 3])", [1, 2, 3]),
        ("flatten([1, [2, [3]]])", [1, 2, 3]),
        ("sort([3, 1, 2])", [1, 2, 3]),
        ("sort(['b', 'a'], 'desc')", ["b", "a"]),
    ],
)
def test_builtin(expression: str, expected: Any) -> None:
    value = run(expression)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("expression", "error"),
    [
        ("int('3.7')", "invalid operation: int(3.7)"),
        ("int('x')", "invalid operation: int(x)"),
        ("int(' 3')", "invalid operation: int( 3)"),
        ("int(true)", "invalid operation: int(bool)"),
        ("float('abc')", "invalid operation: float(abc)"),
        ("float(nil)", "invalid operation: float(<nil>)"),
        ("len(1)", "invalid argument for len (type int)"),
        ("upper(1)", "expected a string, got int"),
        ("join([1], ',')", "expected a string, got int"),
        ("repeat('a', -1)", "invalid argument for repeat"),
        ("max()", "not enough arguments to call max"),
        ("max(1, 'a')", "invalid argument for max (type string)"),
        ("fromJSON('{')", "invalid JSON"),
        ("fromJSON('5e2482')", "cannot unmarshal number 5e2482"),
        ("fromJSON('NaN')", "invalid character 'N'"),
        ("fromBase64('!!')", "illegal base64 data"),
        ("keys([1])", "expected a map, got []interface {}"),
        ("sort([1, 'a'])", "invalid operation"),
        ("sort([1], 'up')", "invalid order up"),
        ("abs('a')", "abs()"),
        ("ceil('a')", "invalid argument for ceil (type string)"),
        ("len()", "len(): wrong number of arguments (0 given)"),
        ("upper('a', 'b')", "upper(): wrong number of arguments (2 given)"),
    ],
)
def test_builtin_errors(expression: str, error: str) -> None:
    assert error in fails(expression)


def test_every_expr_builtin_is_implemented_or_reported() -> None:
    names = """all none any one filter map find findIndex findLast findLastIndex count sum groupBy
    sortBy reduce len type abs ceil floor round int float string trim trimPrefix trimSuffix upper
    lower split splitAfter replace repeat join indexOf lastIndexOf hasPrefix hasSuffix max min mean
    median toJSON fromJSON toBase64 fromBase64 now duration date timezone first last get take keys
    values toPairs fromPairs reverse uniq concat flatten sort bitand bitor bitxor bitnand bitshl
    bitshr bitushr bitnot""".split()
    for name in names:
        try:
            run(f"{name}([1])")
        except ExprError as error:
            assert "is missing" not in str(error), name


@pytest.mark.parametrize(
    "expression",
    ["groupBy([1], #)", "reduce([1], #acc + #)", "now()", "duration('1h')", "take([1], 1)"],
)
def test_unimplemented_builtin_says_so(expression: str) -> None:
    assert "is not supported by the local engine" in fails(expression)


# --- Argo's functions -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("asInt('3')", 3),
        ("asInt(4.9)", 4),
        ("asFloat('2.5')", 2.5),
        ("asFloat(inputs.parameters.x) / 4", 0.5),
        ("asInt(tasks.A.outputs.parameters.count) * 2", 6),
        ("toJson({b: 1, a: [true, nil]})", '{"a":[true,null],"b":1}'),
        ("toJson('a<b')", '"a\\u003cb"'),
        ("toJson(2.0)", "2"),
    ],
)
def test_argo_functions(expression: str, expected: Any) -> None:
    value = run(expression)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("expression", "error"),
    [
        ("asInt('3.7')", "invalid operation: int(3.7)"),
        ("asInt(inputs.parameters.name)", "invalid operation: int(World)"),
        ("asFloat('x')", "invalid operation: float(x)"),
        ("asInt(1, 2)", "asInt(): wrong number of arguments (2 given)"),
        ("jsonpath('{}')", "jsonpath(): wrong number of arguments (1 given)"),
        ("sprig.sub(1)", "sprig.sub(): sub expected 2 arguments, got 1"),
        ("toJson(1 / 0)", "json: unsupported value: +Inf"),
    ],
)
def test_argo_function_errors(expression: str, error: str) -> None:
    assert error in fails(expression)


DOC = (
    '{"store": {"book": [{"title": "A", "price": 8}, {"title": "B", "price": 12, "isbn": "x"}],'
    ' "bicycle": {"color": "red", "price": 20}}, "length": 2, "list": [1, 2, 3, 4, 5]}'
)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("$", None),
        ("$.store.bicycle.color", "red"),
        ("$['store']['bicycle']['color']", "red"),
        ('$["store"].bicycle.price', 20.0),
        ("$.store.book[0].title", "A"),
        ("$.store.book[-1].title", "B"),
        ("$.store.book[*].title", ["A", "B"]),
        ("$.store.book.*.price", [8.0, 12.0]),
        ("$.store.book[*].isbn", ["x"]),
        ("$.store.bicycle.*", ["red", 20.0]),
        ("$..price", [20.0, 8.0, 12.0]),
        ("$..book[0].title", ["A"]),
        ("$.list[0,2]", [1.0, 3.0]),
        ("$.store.bicycle['color','price']", ["red", 20.0]),
        ("$.list[1:3]", [2.0, 3.0]),
        ("$.list[:2]", [1.0, 2.0]),
        ("$.list[-2:]", [4.0, 5.0]),
        ("$.list[::2]", [1.0, 3.0, 5.0]),
        ("$.list[1:3][0]", 2.0),
        ("$.list.length", 5),
        ("$.length", 2.0),
        ("$.store.book.length", 2),
    ],
)
def test_jsonpath(path: str, expected: Any) -> None:
    value = run(f"jsonpath(doc, {path!r})", doc=DOC)
    if path == "$":
        assert value["length"] == 2.0 and value["list"] == [1.0, 2.0, 3.0, 4.0, 5.0]
        return
    assert value == expected


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ("'', '$.id'", "unexpected end of JSON input"),
        ("'not json', '$.id'", "invalid JSON"),
        ("doc, '$.nope'", "key 'nope' not found"),
        ("doc, '$.list[9]'", "index [9] out of range"),
        ("doc, '$.store.book[0].title.x'", "expected a map, got string"),
        ("doc, '$.store.book[?(@.price > 10)]'", "jsonpath filter or script"),
        ("doc, 'store'", "a path starts with '$'"),
        ("doc, '$.'", "a name is missing"),
        ("doc, '$.list[0'", "is never closed"),
        ("doc, '$.list[a]'", "bad subscript"),
        ("doc, 1", "expected a string, got int"),
    ],
)
def test_jsonpath_errors(arguments: str, error: str) -> None:
    assert error in fails(f"jsonpath({arguments})", doc=DOC)


def test_jsonpath_of_a_scalar_document() -> None:
    assert run("jsonpath('3', '$')") == 3.0
    assert run("jsonpath('\"s\"', '$')") == "s"


# --- sprig ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("sprig.trim('  a ')", "a"),
        ("sprig.trimAll('$', '$a$')", "a"),
        ("sprig.trimPrefix('a', 'abc')", "bc"),
        ("sprig.trimSuffix('c', 'abc')", "ab"),
        ("sprig.upper('a')", "A"),
        ("sprig.lower('A')", "a"),
        ("sprig.title('hello world-wide o_k')", "Hello World-Wide O_k"),
        ("sprig.replace('a', 'b', 'aaa')", "bbb"),
        ("sprig.contains('b', 'abc')", True),
        ("sprig.hasPrefix('ab', 'abc')", True),
        ("sprig.hasSuffix('bc', 'abc')", True),
        ("sprig.quote('a\"b', 1, nil)", '"a\\"b" "1"'),
        ("sprig.squote('a', 2)", "'a' '2'"),
        ("sprig.default('d', '')", "d"),
        ("sprig.default('d', 0)", "d"),
        ("sprig.default('d', 'v')", "v"),
        ("sprig.default('d')", "d"),
        ("sprig.empty('')", True),
        ("sprig.empty([])", True),
        ("sprig.empty(0.0)", True),
        ("sprig.empty(false)", True),
        ("sprig.empty(nil)", True),
        ("sprig.empty('x')", False),
        ("sprig.coalesce('', nil, 0, 'x')", "x"),
        ("sprig.ternary('y', 'n', false)", "n"),
        ("sprig.toString(2.5)", "2.5"),
        ("sprig.toString([1, 2])", "[1 2]"),
        ("sprig.atoi('12')", 12),
        ("sprig.atoi('1.5')", 0),
        ("sprig.int('42')", 42),
        ("sprig.int('3.7')", 3),
        ("sprig.int('0x1F')", 31),
        ("sprig.int('010')", 8),
        ("sprig.int('x')", 0),
        ("sprig.int(2.9)", 2),
        ("sprig.int(true)", 1),
        ("sprig.int64('-5')", -5),
        ("sprig.float64('2.5')", 2.5),
        ("sprig.float64('x')", 0.0),
        ("sprig.add(1, '2', 3.9)", 6),
        ("sprig.add1(1)", 2),
        ("sprig.sub(5, 7)", -2),
        ("sprig.mul(2, 3, 4)", 24),
        ("sprig.div(7, 2)", 3),
        ("sprig.div(-7, 2)", -3),
        ("sprig.mod(-7, 3)", -1),
        ("sprig.max(1, 9, '4')", 9),
        ("sprig.min(1, -9)", -9),
        ("sprig.split(',', 'a,b')", {"_0": "a", "_1": "b"}),
        ("sprig.split(',', 'a,b')._1", "b"),
        ("sprig.splitList(',', 'a,b')", ["a", "b"]),
        ("sprig.join('-', ['a', 1, nil])", "a-1"),
        ("sprig.join('-', 'x')", "x"),
        ("sprig.list(1, 'a')", [1, "a"]),
        ("sprig.dict('a', 1, 'b')", {"a": 1, "b": ""}),
        ("sprig.get({a: 1}, 'a')", 1),
        ("sprig.get({a: 1}, 'b')", ""),
        ("sprig.hasKey({a: 1}, 'a')", True),
        ("sprig.keys({a: 1}, {b: 2})", ["a", "b"]),
        ("sprig.values({a: 1})", [1]),
        ("sprig.first([1, 2])", 1),
        ("sprig.last([1, 2])", 2),
        ("sprig.has(2, [1, 2])", True),
        ("sprig.has(2.0, [1, 2])", False),
        ("sprig.b64enc('hi')", "aGk="),
        ("sprig.b64dec('aGk=')", "hi"),
        (
            "sprig.sha256sum('x')",
            "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881",
        ),
        ("sprig.sha1sum('x')", "11f6ad8ec52a2984abaafd7c3b516503785c2072"),
        ("sprig.adler32sum('x')", "7929977"),
        ("sprig.toJson({b: 1, a: '&'})", '{"a":"\\u0026","b":1}'),
        ("sprig.toRawJson({a: '&'})", '{"a":"&"}'),
        ("sprig.toPrettyJson([1])", "[\n  1\n]"),
        ("sprig.fromJson('[1]')", [1.0]),
        ("sprig.fromJson('nope')", None),
        ("sprig.regexMatch('^a+$', 'aaa')", True),
        ("sprig.regexMatch('(', 'aaa')", False),
        ("sprig.regexFind('[0-9]+', 'ab12cd34')", "12"),
        ("sprig.regexReplaceAll('a(x*)b', '-ab-axxb-', '${1}W')", "-W-xxW-"),
        ("sprig.regexReplaceAll('a(x*)b', '-ab-axxb-', '$1W')", "---"),
        ("sprig.regexReplaceAll('(?P<n>b)', 'abc', '[$n]$$')", "a[b]$c"),
        ("sprig.regexReplaceAllLiteral('a', 'aba', '$1')", "$1b$1"),
        ("sprig.trunc(3, 'abcdef')", "abc"),
        ("sprig.trunc(-2, 'abcdef')", "ef"),
        ("sprig.trunc(10, 'abc')", "abc"),
        ("sprig.substr(1, 3, 'abcdef')", "bc"),
        ("sprig.substr(-1, 2, 'abcdef')", "ab"),
        ("sprig.substr(2, 99, 'abcdef')", "cdef"),
        ("sprig.repeat(3, 'ab')", "ababab"),
        ("sprig.nospace(' a b\\tc ')", "abc"),
    ],
)
def test_sprig(expression: str, expected: Any) -> None:
    value = run(expression)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("expression", "error"),
    [
        ("sprig.div(1, 0)", "integer divide by zero"),
        ("sprig.upper(1)", "expected a string, got int"),
        ("sprig.ternary(1, 2, 'yes')", "not a bool"),
        ("sprig.trunc(1.5, 'a')", "expected an int, got float64"),
        ("sprig.substr(4, 2, 'abcdef')", "slice bounds out of range"),
        ("sprig.regexReplaceAll('(', 'a', 'b')", "error parsing regexp"),
        ("sprig.uuidv4()", "sprig.uuidv4() is not supported by the local engine"),
        ("sprig.snakecase('AbC')", "sprig.snakecase() is not supported"),
    ],
)
def test_sprig_errors(expression: str, error: str) -> None:
    message = fails(expression)
    assert error in message
    assert message.count("is not supported") <= 1


def test_a_function_itself_is_a_value_that_cannot_be_rendered() -> None:
    assert callable(run("sprig.upper"))
    with pytest.raises(ExprError, match="cannot marshal the result: json: unsupported type: func"):
        render_result(run("sprig.upper"), "sprig.upper")


# --- unsupported and malformed expressions -------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "construct"),
    [
        ("let x = 1; x", "`let`"),
        ("if true { 1 } else { 2 }", "`if`"),
        ("1; 2", "`;`"),
        ("b'abc'", "bytes literal"),
        ("::upper('a')", "`::`"),
        ("map([1], #acc)", "#acc"),
    ],
)
def test_unsupported_construct_is_named(expression: str, construct: str) -> None:
    message = fails(expression)
    assert construct in message
    assert "is not supported by the local engine" in message


@pytest.mark.parametrize(
    ("expression", "error"),
    [
        ("", "unexpected end of expression"),
        ("1 +", "unexpected end of expression"),
        ("(1 + 2", "unexpected end of expression at column 7 (expected ')')"),
        ("1 2", "unexpected token '2' at column 3"),
        ("[1, 2", "expected ','"),
        ("{a 1}", "expected ':'"),
        ("{[1]: 2}", "a map key is"),
        ("a.'b'", "expected a name"),
        ("a.1", "unexpected token '.1'"),
        ("true ? 1", "expected ':'"),
        ("'a' | 1", "a pipe is followed by a function call"),
        ("1 = 2", "unexpected token '='"),
    ],
)
def test_syntax_error(expression: str, error: str) -> None:
    message = fails(expression, a={})
    assert "syntax error" in message
    assert error in message


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    assert "nests too deeply" in fails("(" * 3000 + "1" + ")" * 3000)


def test_expr_error_is_a_run_error() -> None:
    with pytest.raises(RunError):
        run("1 +")


# --- rendering ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("plain", "plain"),
        ('with "quotes" <b>', 'with "quotes" <b>'),
        ("", ""),
        (True, "true"),
        (False, "false"),
        (3, "3"),
        (-3, "-3"),
        (2.0, "2"),
        (2.5, "2.5"),
        (-0.0, "-0"),
        (0.1 + 0.2, "0.30000000000000004"),
        (1e20, "100000000000000000000"),
        (1e21, "1e+21"),
        (1.5e300, "1.5e+300"),
        (0.000001, "0.000001"),
        (1e-7, "1e-7"),
        (1.25e-10, "1.25e-10"),
        (123456789.0, "123456789"),
        ([1, "a", None, True], '[1,"a",null,true]'),
        ({"b": 1, "a": {"d": [], "c": {}}}, '{"a":{"c":{},"d":[]},"b":1}'),
        (["<&>"], '["\\u003c\\u0026\\u003e"]'),
        (["é\u2028"], '["é\\u2028"]'),
        ([], "[]"),
    ],
)
def test_render_result(value: Any, text: str) -> None:
    assert render_result(value) == text


@pytest.mark.parametrize("value", [None, math.nan, math.inf, [1, math.inf], {"f": len}])
def test_render_result_refuses_what_argo_refuses(value: Any) -> None:
    with pytest.raises(ExprError, match="failed to evaluate expression"):
        render_result(value, "x")


def test_render_result_without_an_expression_says_only_what_failed() -> None:
    with pytest.raises(ExprError) as caught:
        render_result(None)
    assert str(caught.value).startswith("failed to evaluate expression: the result is nil")
    assert "{{=" not in str(caught.value)


def test_render_result_of_nil_names_the_expression_and_the_fix() -> None:
    with pytest.raises(ExprError) as caught:
        render_result(None, "inputs.parameters.x")
    assert "{{=inputs.parameters.x}}" in str(caught.value)
    assert "??" in str(caught.value)


def test_go_float_formats_match_go() -> None:
    assert expr_functions.go_float(1e6) == "1e+06"
    assert expr_functions.go_float(123456.0) == "123456"
    assert expr_functions.go_float(1234567.0) == "1.234567e+06"
    assert expr_functions.go_float(0.0001) == "0.0001"
    assert expr_functions.go_float(0.00001) == "1e-05"
    assert expr_functions.go_float(math.inf) == "+Inf"
    assert expr_functions.go_float(-math.inf) == "-Inf"
    assert expr_functions.go_float(math.nan) == "NaN"
    assert expr_functions.go_float(1e21, json_style=True) == "1e+21"
    assert expr_functions.go_float(5e-324, json_style=True) == "5e-324"


# --- substitution ---------------------------------------------------------------------------


def test_substitute_expressions_replaces_every_tag(env: dict[str, Any]) -> None:
    text = "Hello {{=inputs.parameters.name}}! {{=asInt(inputs.parameters.x) * 2}} {{=[1,'a']}}"
    assert substitute_expressions(text, env) == 'Hello World! 4 [1,"a"]'


def test_substitute_expressions_leaves_simple_tags_and_loose_braces(env: dict[str, Any]) -> None:
    text = "{{inputs.parameters.x}} {{ =1}} {{=1 + 1}} {{=2"
    assert substitute_expressions(text, env) == "{{inputs.parameters.x}} {{ =1}} 2 {{=2"


def test_substitute_expressions_stops_a_tag_at_the_first_closing_braces(
    env: dict[str, Any],
) -> None:
    with pytest.raises(ExprError, match="syntax error"):
        substitute_expressions("{{={a: {b: 1}}.a}}", env)


def test_substitute_expressions_fails_on_a_nil_result(env: dict[str, Any]) -> None:
    with pytest.raises(ExprError, match=r"\{\{=item.nope \?\? nil\}\}"):
        substitute_expressions("x {{=item.nope ?? nil}}", env)
