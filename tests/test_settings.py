"""Parameters merge leaf by leaf: an env file and a --params override keep base's other keys."""

from pathlib import Path

import pytest
import yaml
from kedro.config import OmegaConfigLoader

from drifting_kedro.settings import CONFIG_LOADER_ARGS

BASE = {
    "train": {"runs_dir": "data/06_models/runs", "trainer": {"max_steps": 1500, "lr": 0.001}},
    "ingest": {"sources": [{"name": "a"}, {"name": "b"}], "val_fraction": 0.1},
}
ENV = {"train": {"trainer": {"max_steps": 8000}}, "ingest": {"sources": [{"name": "c"}]}}


def _write(folder: Path, parameters: dict) -> None:
    folder.mkdir(parents=True)
    (folder / "parameters.yml").write_text(yaml.safe_dump(parameters))


def test_env_and_runtime_overrides_change_only_the_keys_they_name(tmp_path):
    _write(tmp_path / "base", BASE)
    _write(tmp_path / "long", ENV)
    runtime = {"train": {"trainer": {"lr": 0.0005}}}
    params = OmegaConfigLoader(
        str(tmp_path), env="long", runtime_params=runtime, **CONFIG_LOADER_ARGS
    )["parameters"]
    assert params["train"] == {
        "runs_dir": "data/06_models/runs",  # base, kept beside the env's and --params' keys
        "trainer": {"max_steps": 8000, "lr": 0.0005},
    }
    assert params["ingest"] == {"sources": [{"name": "c"}], "val_fraction": 0.1}  # list: whole


CONF = Path(__file__).resolve().parents[1] / "conf"
ENVS = sorted(p.name for p in CONF.iterdir() if p.is_dir() and any(p.glob("parameters_*.yml")))


def _leaves(tree: dict, prefix: tuple = ()) -> dict[tuple, object]:
    """Leaf path -> value; a list is one leaf (it merges whole)."""
    leaves = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            leaves.update(_leaves(value, (*prefix, key)))
        else:
            leaves[(*prefix, key)] = value
    return leaves


@pytest.mark.parametrize("env", [e for e in ENVS if e != "base"])
def test_every_project_env_keeps_every_base_parameter_it_does_not_name(env):
    base = OmegaConfigLoader(str(CONF), env="base", **CONFIG_LOADER_ARGS)["parameters"]
    merged = OmegaConfigLoader(str(CONF), env=env, **CONFIG_LOADER_ARGS)["parameters"]
    named = set()
    for path in (CONF / env).glob("parameters_*.yml"):
        named |= set(_leaves(yaml.safe_load(path.read_text())))
    # Paths built from conf/<env>/globals.yml (the env's data subfolder) differ by design.
    raw_base = {}
    for path in (CONF / "base").glob("parameters_*.yml"):
        raw_base |= _leaves(yaml.safe_load(path.read_text()))
    merged_leaves = _leaves(merged)
    for key, value in _leaves(base).items():
        if key not in named and "${globals:" not in str(raw_base[key]):
            assert merged_leaves[key] == value, ".".join(key)


def test_project_envs_never_share_a_simulated_root_with_other_recording_settings():
    """Ingest refuses a recorded root whose settings differ: envs run in one project must agree."""
    recordings = {}
    for env in ENVS:
        params = OmegaConfigLoader(str(CONF), env=env, **CONFIG_LOADER_ARGS)["parameters"]
        for recording in params["demonstrations"]:
            settings = [recording[k] for k in ("name", "num_episodes", "seed", "image_size")]
            settings.append(recording.get("use_videos", False))
            settings.append(recording.get("steps_after_success"))
            recordings.setdefault(recording["root"], {})[env] = tuple(settings)
    for root, by_env in recordings.items():
        assert len(set(by_env.values())) == 1, (root, by_env)


@pytest.mark.parametrize("env", [e for e in ENVS if e != "base"])
def test_every_project_env_file_holds_only_what_it_changes(env):
    """A value an env repeats from base hides which of its settings really differ."""
    base = _leaves(OmegaConfigLoader(str(CONF), env="base", **CONFIG_LOADER_ARGS)["parameters"])
    for path in (CONF / env).glob("parameters_*.yml"):
        for key, value in _leaves(yaml.safe_load(path.read_text())).items():
            assert base.get(key, object()) != value, f"{path.name}: {'.'.join(key)} is base's"
