"""The registry file: rows become specs, templated rows expand, bad rows name themselves."""

import json
import pickle
from dataclasses import asdict

import pytest
import yaml

from drifting_kedro.action_space import Embodiment
from drifting_kedro.action_space.registry import (
    LAYOUTS,
    REGISTRY,
    REGISTRY_PATH,
    DatasetSpec,
    Layout,
    RegistryError,
    get_spec,
    load_registry,
)

GOOD_ROW = {
    "name": "my_arm",
    "source": "lerobot_v3",
    "source_id": "me/my_arm",
    "action": "joints7",
    "embodiment": "gripper_joint",
    "cameras": ["observation.images.top"],
    "fps": 10.0,
}


def write_rows(tmp_path, *rows):
    path = tmp_path / "registry.yml"
    path.write_text(yaml.safe_dump(list(rows)))
    return path


def test_shipped_file_is_the_registry():
    rows = yaml.safe_load(REGISTRY_PATH.read_text())
    assert load_registry() == REGISTRY
    assert len(rows) == 20 and len(REGISTRY) == 69  # one templated row for behavior1k's 50


def test_every_layout_is_named_by_a_row():
    rows = yaml.safe_load(REGISTRY_PATH.read_text())
    named = {row["action"] for row in rows} | {row["state"] for row in rows if "state" in row}
    assert named == set(LAYOUTS)


def test_row_becomes_spec_with_state_defaulting_to_action(tmp_path):
    spec = load_registry(write_rows(tmp_path, GOOD_ROW))["my_arm"]
    assert spec.action_names == LAYOUTS["joints7"].names
    assert spec.action_indices == spec.state_indices == tuple(range(8, 15))
    assert spec.embodiment is Embodiment.GRIPPER_JOINT and spec.cameras == tuple(
        GOOD_ROW["cameras"]
    )
    assert not spec.quat_active and spec.instruction is None
    fetch = get_spec("fetch_push")
    assert fetch.action_indices != fetch.state_indices  # an explicit state layout wins


def test_quaternion_follows_from_the_layout():
    assert get_spec("rlbench").quat_active and get_spec("dexgraspnet").quat_active
    assert not get_spec("fetch_pick_and_place_abs").quat_active  # region A without dims 3..6


def test_templated_row_expands_per_task(tmp_path):
    row = {**GOOD_ROW, "name": "arm_t{task:02d}", "source_id": "me/arm-{task}", "tasks": 3}
    registry = load_registry(write_rows(tmp_path, row))
    assert list(registry) == ["arm_t00", "arm_t01", "arm_t02"]
    assert registry["arm_t02"].source_id == "me/arm-2"
    assert get_spec("behavior1k_t0031").source_id == "lerobot/behavior1k-task0031"


def test_spec_round_trips_through_asdict_json_and_pickle():
    for spec in REGISTRY.values():
        row = asdict(spec)  # what a checkpoint stores
        assert DatasetSpec(**row) == spec
        assert DatasetSpec(**pickle.loads(pickle.dumps(row))) == spec
        from_json = DatasetSpec(**json.loads(json.dumps(row)))  # lists, an int embodiment
        assert from_json == spec and hash(from_json) == hash(spec)
        assert from_json.embodiment is spec.embodiment
        assert isinstance(from_json.action_indices, tuple) and isinstance(from_json.fps, float)


def test_rebuilt_spec_rejects_a_bad_embodiment():
    row = {**asdict(get_spec("aloha")), "embodiment": 9}
    with pytest.raises(ValueError, match=r"aloha: embodiment 9 is not one of \[0, 1, 2, 3, 4\]"):
        DatasetSpec(**row)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"action": "joints8"}, r"action layout 'joints8' is not one of \[.*'joints7'"),
        ({"state": "nothing"}, "state layout 'nothing' is not one of"),
        ({"fps": None}, r"missing field\(s\) \['fps'\]"),
        ({"camera": ["a"]}, r"unknown field\(s\) \['camera'\]"),
        ({"embodiment": "humanoid"}, "embodiment 'humanoid' is not one of .*'gripper_joint'"),
        ({"source": "hub"}, r"source 'hub' not in \('sim', 'lerobot_v3'"),
        ({"embodiment": "gripper_eef"}, r"action indices \[8, .*\] lie outside the regions"),
        ({"fps": 0}, "fps must be a number > 0, got 0"),
        ({"fps": "fast"}, "fps must be a number > 0, got 'fast'"),
        ({"cameras": "observation.images.top"}, "cameras must be a list of camera keys"),
        ({"source_id": 7}, r"field\(s\) \['source_id'\] must be text"),
        ({"name": "arm_{task}"}, "needs `tasks: <count>`"),
        ({"tasks": 2}, r"needs a \{task\} placeholder in its name"),
        ({"name": "arm_{task:z}", "tasks": 2}, "bad placeholder"),
        ({"tasks": 0, "name": "arm_{task}"}, "tasks must be a count >= 1, got 0"),
    ],
)
def test_bad_row_is_named_in_the_error(tmp_path, change, message):
    row = {k: v for k, v in {**GOOD_ROW, **change}.items() if v is not None}
    path = write_rows(tmp_path, GOOD_ROW | {"name": "first"}, row)
    with pytest.raises(RegistryError, match=message) as err:
        load_registry(path)
    assert str(err.value).startswith(f"{path}: row 2 ({row['name']}): ")


def test_duplicate_name_names_both_rows(tmp_path):
    templated = {**GOOD_ROW, "name": "my_arm{task}", "tasks": 3}
    path = write_rows(tmp_path, {**GOOD_ROW, "name": "my_arm1"}, templated)
    with pytest.raises(RegistryError, match=r"row 2 \(my_arm\{task\}\): duplicate dataset name "):
        load_registry(path)
    path = write_rows(tmp_path, GOOD_ROW, GOOD_ROW)
    with pytest.raises(RegistryError, match="row 2 .*'my_arm', first in row 1"):
        load_registry(path)


def test_row_that_is_not_a_mapping(tmp_path):
    with pytest.raises(RegistryError, match="row 1: a row is a mapping of fields, got str"):
        load_registry(write_rows(tmp_path, "my_arm"))


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "expected a list of dataset rows, got None"), ("name: x\n", "got {'name': 'x'}")],
)
def test_file_that_is_not_a_list_of_rows(tmp_path, text, message):
    path = tmp_path / "registry.yml"
    path.write_text(text)
    with pytest.raises(RegistryError, match=message):
        load_registry(path)


def test_unreadable_file_is_named(tmp_path):
    with pytest.raises(RegistryError, match="cannot read the dataset registry .*missing.yml"):
        load_registry(tmp_path / "missing.yml")
    path = tmp_path / "broken.yml"
    path.write_text("- name: [unclosed\n")
    with pytest.raises(RegistryError, match="cannot read the dataset registry .*broken.yml"):
        load_registry(path)


@pytest.mark.parametrize(
    ("indices", "message"),
    [
        ((8, 8), r"duplicate native indices \(8, 8\)"),
        ((8, 128), r"native indices \[128\] outside 0\.\.127"),
    ],
)
def test_bad_layout_is_rejected(indices, message):
    with pytest.raises(ValueError, match=f"layout 'two': {message}"):
        Layout("two", ("a", "b"), indices)


def test_layout_must_lie_in_the_embodiments_regions(tmp_path):
    # A layout in region F is valid only for the bimanual embodiment.
    layouts = {**LAYOUTS, "base": Layout("base", ("vx", "vy"), (56, 57))}
    registry = load_registry(
        write_rows(tmp_path, {**GOOD_ROW, "action": "base", "embodiment": "bimanual"}), layouts
    )
    assert registry["my_arm"].action_indices == (56, 57)
    path = write_rows(tmp_path, {**GOOD_ROW, "action": "base"})
    outside = r"row 1 \(my_arm\): action indices \[56, 57\] lie outside"
    with pytest.raises(RegistryError, match=outside):
        load_registry(path, layouts)
