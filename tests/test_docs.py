"""docs/parameters.md lists every parameter and config field, and is what its generator writes."""

import dataclasses
import importlib.util
from pathlib import Path

import yaml

from drifting_kedro.launch import LaunchConfig
from drifting_kedro.sources import SourceConfig
from drifting_kedro.training.config import TrainConfig

PROJECT = Path(__file__).resolve().parents[1]
PAGE = PROJECT / "docs" / "parameters.md"


def _leaves(tree: object, prefix: str = "") -> list[str]:
    if isinstance(tree, dict):
        return [k for key, v in tree.items() for k in _leaves(v, f"{prefix}{key}.")]
    return [prefix.rstrip(".")]


def _section(page: str, title: str) -> str:
    return page.split(f"## {title}", 1)[1].split("\n## ", 1)[0]


def test_every_base_parameter_and_config_field_has_a_row():
    page = PAGE.read_text()
    for path in sorted((PROJECT / "conf" / "base").glob("parameters_*.yml")):
        section = _section(page, path.name)
        for key in _leaves(yaml.safe_load(path.read_text())):
            assert f"| `{key}` |" in section, f"{path.name}: {key} missing from docs/parameters.md"
    for title, cls in (
        ("SourceConfig", SourceConfig),
        ("TrainConfig", TrainConfig),
        ("LaunchConfig", LaunchConfig),
    ):
        section = _section(page, title)
        for field in dataclasses.fields(cls):
            assert f"| `{field.name}` |" in section, f"{title}.{field.name} missing"


def test_parameters_page_is_regenerated():
    path = PROJECT / "docs" / "make_parameters.py"
    spec = importlib.util.spec_from_file_location("make_parameters", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert PAGE.read_text() == module.render(), (
        "docs/parameters.md is stale: run `python docs/make_parameters.py`"
    )
