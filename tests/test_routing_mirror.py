"""The HTTPRoute's RequestMirror filter: strictly valid, its CEL rules hold, shares are exact."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import yaml

from serving import routing
from serving.routing import Mirror
from workflows.spec import ReleaseSpec, load_spec
from workflows.validation import SchemaRegistry
from workflows.validation.validate import validate_documents

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "releases" / "tiny.yaml"
#: (CEL rule as the upstream schema writes it, what it checks on an emitted requestMirror).
MIRROR_RULES = {
    "!(has(self.percent) && has(self.fraction))": "not both percent and fraction",
    "self.numerator <= self.denominator": "numerator <= denominator",
}


@pytest.fixture(scope="module")
def tiny() -> ReleaseSpec:
    return load_spec(TINY)


def _mirror_of(route: dict[str, Any]) -> dict[str, Any]:
    (rule,) = route["spec"]["rules"]
    (flt,) = rule["filters"]
    assert flt["type"] == "RequestMirror"
    mirror: dict[str, Any] = flt["requestMirror"]
    return mirror


def _check_cel_rules(mirror: dict[str, Any]) -> None:
    """The requestMirror's two x-kubernetes-validations, which the JSON schema cannot check."""
    assert not ("percent" in mirror and "fraction" in mirror), mirror
    if "fraction" in mirror:
        fraction = mirror["fraction"]
        assert fraction["numerator"] <= fraction.get("denominator", 100), mirror
        assert fraction.get("denominator", 100) >= 1 and fraction["numerator"] >= 0


def _share(mirror: dict[str, Any]) -> Fraction:
    if "percent" in mirror:
        return Fraction(mirror["percent"], 100)
    if "fraction" in mirror:
        return Fraction(mirror["fraction"]["numerator"], mirror["fraction"].get("denominator", 100))
    return Fraction(1)


def _schema_rules(schemas_dir: Path) -> list[str]:
    """Every x-kubernetes-validations rule under requestMirror in the upstream CRD."""
    path = schemas_dir / "gateway-api" / "gateway.networking.k8s.io_httproutes.yaml"
    rules: list[str] = []

    def walk(node: Any, inside: bool) -> None:
        if isinstance(node, dict):
            if inside:
                for item in node.get("x-kubernetes-validations") or []:
                    rules.append(" ".join(item["rule"].split()))
            for key, value in node.items():
                walk(value, inside or key == "requestMirror")
        elif isinstance(node, list):
            for value in node:
                walk(value, inside)

    walk(yaml.safe_load(path.read_text()), False)
    return rules


# --- shape ------------------------------------------------------------------------------------


def test_mirror_filter_names_the_track_service_and_port(tiny: ReleaseSpec) -> None:
    route = routing.build_httproute(tiny, {"stable": 100}, mirror=Mirror("canary", 0.1))
    (rule,) = route["spec"]["rules"]
    assert rule["backendRefs"] == [{"name": "tiny-llama-stable", "port": 8000, "weight": 100}]
    assert rule["filters"] == [
        {
            "type": "RequestMirror",
            "requestMirror": {
                "backendRef": {"name": "tiny-llama-canary", "port": 8000},
                "percent": 10,
            },
        }
    ]
    assert rule["timeouts"] == {"request": "10m", "backendRequest": "10m"}


def test_no_mirror_is_the_route_as_before(tiny: ReleaseSpec) -> None:
    plain = routing.build_httproute(tiny, {"stable": 90, "canary": 10})
    assert routing.build_httproute(tiny, {"stable": 90, "canary": 10}, mirror=None) == plain
    assert "filters" not in plain["spec"]["rules"][0]


@pytest.mark.parametrize(
    ("fraction", "expected"),
    [
        (1, {"percent": 100}),
        (1.0, {"percent": 100}),
        (0.5, {"percent": 50}),
        (0.29, {"percent": 29}),  # 0.29 * 100 is 28.999... in floats: still a whole percent
        (0.01, {"percent": 1}),
        (0.125, {"fraction": {"numerator": 1, "denominator": 8}}),
        (1 / 3, {"fraction": {"numerator": 1, "denominator": 3}}),
        (0.005, {"fraction": {"numerator": 1, "denominator": 200}}),
        (Fraction(2, 3), {"fraction": {"numerator": 2, "denominator": 3}}),
        (1e-6, {"fraction": {"numerator": 1, "denominator": 1_000_000}}),
    ],
)
def test_share_is_percent_when_whole_else_an_exact_fraction(
    tiny: ReleaseSpec, fraction: float, expected: dict[str, Any]
) -> None:
    mirror = _mirror_of(routing.build_httproute(tiny, {"stable": 100}, Mirror("canary", fraction)))
    assert {k: v for k, v in mirror.items() if k != "backendRef"} == expected
    assert math.isclose(float(_share(mirror)), float(fraction), rel_tol=1e-9)
    _check_cel_rules(mirror)


# --- validity ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [1, 0.5, 0.29, 0.125, 1 / 3, 0.005, 1e-6, 0.999999])
def test_mirrored_routes_validate_strictly_and_keep_the_cel_rules(
    tiny: ReleaseSpec, registry: SchemaRegistry, fraction: float
) -> None:
    for weights in ({"stable": 100}, {"stable": 90, "canary": 10}):
        route = routing.build_httproute(tiny, weights, mirror=Mirror("canary", fraction))
        problems = validate_documents([("mirrored", route)], registry)
        assert [str(p) for p in problems] == []
        _check_cel_rules(_mirror_of(route))


def test_the_cel_rules_checked_are_the_schemas(schemas_dir: Path) -> None:
    rules = _schema_rules(schemas_dir)
    for rule in MIRROR_RULES:
        assert rule in rules, f"{rule!r} not among the requestMirror rules {rules}"


def test_a_wrong_mirror_field_is_caught_by_validation(
    tiny: ReleaseSpec, registry: SchemaRegistry
) -> None:
    route = routing.build_httproute(tiny, {"stable": 100}, mirror=Mirror("canary", 0.5))
    mirror = _mirror_of(route)
    mirror["percentage"] = mirror.pop("percent")
    problems = [str(p) for p in validate_documents([("bad", route)], registry)]
    assert any("percentage" in p for p in problems), problems


# --- refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fraction", "message"),
    [
        (0, r"mirror fraction 0 is outside \(0, 1\].*mirror=None"),
        (0.0, r"mirror fraction 0.0 is outside \(0, 1\]"),
        (-0.1, r"mirror fraction -0.1 is outside \(0, 1\]"),
        (1.5, r"mirror fraction 1.5 is outside \(0, 1\].*e.g. 0.1"),
        (float("nan"), r"mirror fraction nan is outside \(0, 1\]"),
        (float("inf"), r"mirror fraction inf is outside \(0, 1\]"),
        (1e-9, r"mirror fraction 1e-09 is below 1/1000000"),
        (True, r"mirror fraction True is not a number"),
        ("0.5", r"mirror fraction '0.5' is not a number"),
    ],
)
def test_bad_fractions_are_refused(fraction: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Mirror("canary", fraction)


def test_an_unknown_track_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown track 'shadow': use one of stable, canary"):
        Mirror("shadow", 0.5)


def test_mirror_is_frozen() -> None:
    mirror = Mirror("canary", 0.5)
    with pytest.raises(AttributeError):
        mirror.fraction = 0.2  # type: ignore[misc]
