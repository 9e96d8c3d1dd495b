"""Parameters merge leaf by leaf: an env file and a --params override keep base's other keys."""

from pathlib import Path

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


def test_the_long_env_keeps_every_base_parameter_it_does_not_name():
    conf = Path(__file__).resolve().parents[1] / "conf"
    base = OmegaConfigLoader(str(conf), env="base", **CONFIG_LOADER_ARGS)["parameters"]
    long = OmegaConfigLoader(str(conf), env="long", **CONFIG_LOADER_ARGS)["parameters"]
    named = yaml.safe_load((conf / "long" / "parameters_train.yml").read_text())["train"]["trainer"]
    assert long["train"]["runs_dir"] == base["train"]["runs_dir"]
    for key, value in base["train"]["trainer"].items():
        if key not in named:
            assert long["train"]["trainer"][key] == value, key
    assert long["ingest"]["val_fraction"] == base["ingest"]["val_fraction"]
