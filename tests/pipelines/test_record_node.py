"""Recording is its own node: it feeds ingest through the catalog; bad entries name themselves."""

import pytest

from drifting_kedro.pipelines.ingest import create_pipeline
from drifting_kedro.pipelines.ingest.nodes import ingest_episodes, record_demonstrations
from drifting_kedro.sources import SourceConfig

CUBE = {"name": "aloha_sim_transfer_cube", "root": "data/x", "num_episodes": 2}
INGEST = {"sources": [], "frames_dir": "f", "image_size": 32, "on_error": "raise"}


def test_recording_feeds_ingest_through_the_catalog():
    nodes = {node.name: node for node in create_pipeline().nodes}
    record, ingest = nodes["record_demonstrations_node"], nodes["ingest_episodes_node"]
    assert record.inputs == ["params:demonstrations"]
    assert record.outputs == ["recorded_demonstrations"]
    assert "recorded_demonstrations" in ingest.inputs


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([CUBE, CUBE], r"lists \['aloha_sim_transfer_cube'\] more than once"),
        ([{**CUBE, "kind": "sim"}], r"demonstrations entry aloha_sim_transfer_cube has unknown "),
        ([{**CUBE, "num_episodes": 0}], r"demonstrations\[aloha_sim_transfer_cube\].num_episodes"),
        ([{**CUBE, "root": ""}], r"demonstrations\[aloha_sim_transfer_cube\] needs a `root`"),
    ],
)
def test_a_bad_demonstrations_entry_is_named_before_anything_is_simulated(entries, message):
    with pytest.raises(ValueError, match=message):
        record_demonstrations(entries)


def test_a_simulated_source_in_ingest_sources_points_to_demonstrations():
    with pytest.raises(ValueError, match=r"kind 'sim': simulated datasets are listed under `demo"):
        SourceConfig(name="aloha_sim_transfer_cube", kind="sim", root="data/x")


def test_a_dataset_both_recorded_and_listed_as_a_source_is_an_error():
    options = {**INGEST, "sources": [{"name": "aloha_sim_transfer_cube", "kind": "lerobot_v3",
                                      "root": "data/x"}]}  # fmt: skip
    recorded = {"aloha_sim_transfer_cube": {"root": "data/x"}}
    with pytest.raises(ValueError, match=r"both recorded \(`demonstrations`\) and listed in ing"):
        ingest_episodes(options, recorded)
