import pytest

from drifting_kedro.training.config import TrainConfig


def make(**fields) -> TrainConfig:
    return TrainConfig(
        run_dir="run",
        table_path="t.parquet",
        stats_path="s.json",
        feature_paths={"aloha": "f.h5"},
        **fields,
    )


def test_flash_attention_on_a_cpu_machine_fails_before_launch_naming_the_option():
    with pytest.raises(ValueError, match=r"train.trainer .*attention_backend='flash'.*sdpa"):
        make(model_overrides={"attention_backend": "flash"})


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"head": "gan"}, "train.trainer.head"),
        ({"loss_mode": "marginal"}, "train.trainer.loss_mode"),
        ({"generations": 1}, "train.trainer.generations"),
        ({"model_overrides": {"action_patch": 7}}, "action_patch"),
        ({"keep_every": -1}, "train.trainer.keep_every"),
        ({"state_noise": {"aloha": -0.1}}, "train.trainer.state_noise"),
    ],
)
def test_bad_trainer_settings_name_the_parameter(fields, message):
    with pytest.raises(ValueError, match=message):
        make(**fields)
