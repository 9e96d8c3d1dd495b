"""docs/parameters.md lists every parameter and config field, and is what its generator writes;
links between the docs lead to a file and heading that exist."""

import dataclasses
import importlib.util
import re
from pathlib import Path

import pytest
import yaml

from drifting_kedro.launch import LaunchConfig
from drifting_kedro.sim.record import RecordingConfig
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
        ("RecordingConfig", RecordingConfig),
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


LINK = re.compile(r"\]\(([^)\s]+)\)")
PAGES = sorted((PROJECT / "docs").glob("*.md")) + [PROJECT / "README.md"]


def _anchor(heading: str) -> str:
    """GitHub's id of a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)
    return {_anchor(h) for h in re.findall(r"^#+ (.+)$", text, flags=re.MULTILINE)}


def _broken_links(page: Path) -> list[str]:
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):
            continue  # a web address
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(f"{target}: no file {linked}")
        elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
            broken.append(f"{target}: no heading #{anchor} in {linked.name}")
    return broken


def test_anchor_follows_github_ids():
    assert _anchor("2026-12-02: the previous default, `--env=long` and its extensions") == (
        "2026-12-02-the-previous-default---envlong-and-its-extensions"
    )
    assert _anchor("Pick-and-place at 72 %: failures") == "pick-and-place-at-72--failures"


def test_a_link_to_a_missing_heading_is_found(tmp_path):
    (tmp_path / "a.md").write_text("# Title\n\n## Results\n")
    (tmp_path / "b.md").write_text("[ok](a.md#results) [gone](a.md#history) [none](c.md)\n")
    assert _broken_links(tmp_path / "b.md") == [
        "a.md#history: no heading #history in a.md",
        f"c.md: no file {tmp_path / 'c.md'}",
    ]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_links_lead_to_existing_files_and_headings(page):
    assert _broken_links(page) == []


def test_the_readme_control_loop_runs_as_written(tmp_path):
    """The README's own example, on an untrained policy saved the way the trainer saves one."""
    from policy_helpers import tiny_checkpoint

    from drifting_kedro.features import build_backbone
    from drifting_kedro.training.checkpoint import save_checkpoint

    readme = (PROJECT / "README.md").read_text()
    code = readme.split("## The policy in your own control loop", 1)[1]
    code = code.split("```python\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "final.pt"
    hidden = build_backbone("small-real").hidden_size
    save_checkpoint(tiny_checkpoint("aloha_sim_transfer_cube", hidden, horizon=50), path)
    written = "data/06_models/runs/<run id>/checkpoints/final.pt"
    assert written in code
    namespace: dict = {}
    exec(compile(code.replace(written, str(path)), "README.md", "exec"), namespace)
    assert namespace["done"] and namespace["chunk"].shape == (50, 14)
