"""Parameters merge leaf by leaf: an env file and a --params override keep base's other keys."""

from pathlib import Path

from kedro.config import OmegaConfigLoader

from drifting_kedro.settings import CONFIG_LOADER_ARGS

CONF = Path(__file__).resolve().parents[1] / "conf"


def test_env_and_runtime_overrides_change_only_the_keys_they_name():
    runtime = {"train": {"trainer": {"lr": 0.0005}}}
    params = OmegaConfigLoader(str(CONF), env="long", runtime_params=runtime, **CONFIG_LOADER_ARGS)[
        "parameters"
    ]
    trainer = params["train"]["trainer"]
    assert trainer["lr"] == 0.0005  # --params
    assert trainer["max_steps"] == 4000  # conf/long
    assert trainer["dataset_weights"] == {"fetch_pick_and_place_abs": 10000}
    assert trainer["batch_size"] == 32 and params["train"]["runs_dir"]  # base, kept
    assert [s["name"] for s in params["ingest"]["sources"]] == [  # a list is replaced whole
        "aloha_sim_transfer_cube",
        "fetch_pick_and_place_abs",
    ]
    assert params["ingest"]["val_fraction"] == 0.1  # base, kept
