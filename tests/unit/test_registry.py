"""The list of meshbus's own adapters (``meshbus.registry.ADAPTERS``) against the packaging that
must agree with it: the root extras, each adapter's name and its entry points."""

from __future__ import annotations

import tomllib
from pathlib import Path

import meshbus
from meshbus import errors
from meshbus.registry import ADAPTERS, ENTRY_POINT_GROUP, KNOWN_ADAPTERS

ROOT = Path(__file__).resolve().parents[2]


def _pyproject(path: Path) -> dict[str, object]:
    with path.open("rb") as file:
        found: dict[str, object] = tomllib.load(file)["project"]
    return found


def test_the_root_extras_install_each_adapter() -> None:
    extras = _pyproject(ROOT / "pyproject.toml")["optional-dependencies"]
    assert isinstance(extras, dict)
    for extra in ADAPTERS:
        assert extras[extra] == [f"meshbus-{extra}"]


def test_each_adapter_is_named_for_its_extra_and_serves_its_schemes() -> None:
    folders = {path.parent.name for path in ROOT.glob("adapters/*/pyproject.toml")}
    assert folders == set(ADAPTERS)
    for extra, schemes in ADAPTERS.items():
        project = _pyproject(ROOT / "adapters" / extra / "pyproject.toml")
        assert project["name"] == f"meshbus-{extra}"
        entry_points = project["entry-points"]
        assert isinstance(entry_points, dict)
        assert sorted(entry_points[ENTRY_POINT_GROUP]) == sorted(schemes)


def test_known_adapters_come_from_the_one_list() -> None:
    assert KNOWN_ADAPTERS == {
        "nats": ("meshbus-nats", "nats"),
        "amqp": ("meshbus-rabbitmq", "rabbitmq"),
        "amqps": ("meshbus-rabbitmq", "rabbitmq"),
        "kafka": ("meshbus-kafka", "kafka"),
    }


def test_meshbus_exports_every_error() -> None:
    for name in errors.__all__:
        assert name in meshbus.__all__
        assert getattr(meshbus, name) is getattr(errors, name)
    assert len(meshbus.__all__) == len(set(meshbus.__all__))
