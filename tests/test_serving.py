"""The policy as a registered MLflow model: logged with its closed-loop results, loaded from the
registry, answering exactly what InferencePolicy predicts, refusing bad requests with a clear
message; and served over HTTP by `mlflow models serve`."""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.exceptions import MlflowException
from policy_helpers import tiny_checkpoint

from drifting_kedro.evaluation.policy import InferencePolicy
from drifting_kedro.features.backbone import build_backbone
from drifting_kedro.pipelines.evaluate.nodes import register_policy
from drifting_kedro.serving import ServingConfig, encode_png, image_column, log_policy

DATASET = "fetch_pick_and_place"  # two cameras
NAME = "drifting-policy"
IMAGE_SIZE = 64
CLOSED_LOOP = {
    DATASET: {
        "success_rate": 0.5,
        "success_ci95_low": 0.2,
        "success_ci95_high": 0.8,
        "episodes": 10.0,
    }
}


@pytest.fixture(scope="module")
def backbone():
    return build_backbone("small-real")


@pytest.fixture(scope="module")
def checkpoint(backbone) -> dict:
    return tiny_checkpoint(DATASET, backbone.hidden_size)


def evaluate_options(enabled: bool = True) -> dict:
    return {
        "checkpoint": "",
        "use_ema": True,
        "sampling_steps": 10,
        "register_model": {"enabled": enabled, "name": NAME},
    }


def register(checkpoint: dict, enabled: bool = True) -> None:
    """What `register_policy_node` does at the end of a `kedro run`'s evaluation."""
    register_policy(
        checkpoint,
        CLOSED_LOOP,
        {"image_size": IMAGE_SIZE},
        {"backbone": "small-real"},
        evaluate_options(enabled),
    )


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory, checkpoint) -> str:
    """A scratch sqlite MLflow whose one run registered the policy as version 1."""
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        experiment = mlflow.create_experiment("serving", artifact_location=str(root / "artifacts"))
        with mlflow.start_run(experiment_id=experiment):
            register(checkpoint)
            register(checkpoint, enabled=False)
        yield uri
    finally:
        mlflow.set_tracking_uri(previous)


@pytest.fixture(scope="module")
def observation() -> dict:
    rng = np.random.default_rng(0)
    return {
        "images": {
            camera: rng.integers(0, 256, (IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
            for camera in ("observation.images.front", "observation.images.side")
        },
        "state": rng.normal(size=4).astype(np.float32),
        "instruction": "Pick up the block and place it at the red target.",
    }


def request(observation: dict, **changes) -> dict:
    row = {
        "dataset": DATASET,
        "instruction": observation["instruction"],
        "state": observation["state"].tolist(),
        **{
            image_column(camera): encode_png(image)
            for camera, image in observation["images"].items()
        },
    }
    return {**row, **changes}


@pytest.fixture(scope="module")
def expected(checkpoint, backbone, observation) -> np.ndarray:
    """What InferencePolicy itself predicts for the observation, with the served model's seed."""
    policy = InferencePolicy.from_checkpoint(checkpoint, backbone, image_size=IMAGE_SIZE)
    return policy.predict_chunk(
        DATASET,
        observation["images"],
        observation["instruction"],
        observation["state"],
        generator=torch.Generator().manual_seed(0),
    )


@pytest.fixture(scope="module")
def served_model(tracking_uri):
    return mlflow.pyfunc.load_model(f"models:/{NAME}/1")


BAD_REQUESTS = [
    ({"dataset": "aloha_sim_insertion"}, "dataset 'aloha_sim_insertion' is not one the policy"),
    (
        {image_column("observation.images.side"): None},
        "needs camera 'observation.images.side' as a base64 PNG in column "
        "'image.observation.images.side'",
    ),
    ({"state": [0.1, 0.2]}, f"dataset '{DATASET}' needs a state of 4 numbers"),
    (
        {image_column("observation.images.front"): "bm90IGFuIGltYWdl"},  # "not an image"
        "column 'image.observation.images.front' is not a base64-encoded PNG",
    ),
]


def test_one_run_registers_one_version_listing_its_closed_loop_results(tracking_uri):
    client = mlflow.MlflowClient()
    assert [str(v.version) for v in client.search_model_versions(f"name='{NAME}'")] == ["1"]
    version = client.get_model_version(NAME, "1")
    assert version.tags[f"eval.{DATASET}/success_rate"] == "0.5"
    assert version.tags[f"eval.{DATASET}/episodes"] == "10.0"
    assert f"{DATASET}: success 50% over 10 seeded episodes" in version.description


def test_the_registered_model_predicts_what_the_inference_policy_predicts(
    served_model, observation, expected
):
    rows = [request(observation), request(observation)]
    chunks = np.asarray(served_model.predict(pd.DataFrame(rows)))
    assert chunks.shape == (2, *expected.shape) == (2, 8, 4)
    np.testing.assert_allclose(chunks[0], expected, atol=1e-6)
    np.testing.assert_array_equal(chunks[0], chunks[1])  # a fixed seed per row


@pytest.mark.parametrize(("changes", "message"), BAD_REQUESTS)
def test_a_bad_request_is_refused_with_what_is_wrong(served_model, observation, changes, message):
    with pytest.raises(MlflowException, match=message) as error:
        served_model.predict(pd.DataFrame([request(observation, **changes)]))
    assert error.value.get_http_status_code() == 400


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def post(url: str, body: dict) -> tuple[int, dict]:
    data = json.dumps(body).encode()
    call = urllib.request.Request(url, data, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(call, timeout=120) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


@pytest.mark.slow
def test_mlflow_models_serve_answers_a_chunk_and_a_bad_request_with_400(
    tracking_uri, observation, expected, tmp_path
):
    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "mlflow", "models", "serve"),
            *("-m", f"models:/{NAME}/1", "--env-manager", "local"),
            *("--host", "127.0.0.1", "-p", str(port)),
        ],
        env={**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "HF_HUB_OFFLINE": "1"},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: uvicorn is a child of the CLI
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while True:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            assert time.time() < deadline, "the server did not answer /ping within 180 s"
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=5):
                    break
            except OSError:
                time.sleep(1)

        status, answer = post(f"{url}/invocations", {"dataframe_records": [request(observation)]})
        assert status == 200, answer
        chunk = np.asarray(answer["predictions"][0])
        assert chunk.shape == expected.shape
        # The server is another process with its own torch thread count, so its float sums may
        # run in another order: equal to float32 rounding, not to the last bit.
        np.testing.assert_allclose(chunk, expected, rtol=1e-4, atol=1e-5)

        changes, message = BAD_REQUESTS[2]  # wrong state width
        status, answer = post(
            f"{url}/invocations", {"dataframe_records": [request(observation, **changes)]}
        )
        assert status == 400
        assert message in answer["message"]
    finally:
        stop(server)
        log.close()


def stop(server: subprocess.Popen) -> None:
    """End the server's process group (the CLI and the uvicorn it started), SIGKILL if stuck."""
    deadline = time.time() + 30
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGTERM)
        while time.time() < deadline:
            server.poll()  # reap the CLI, so that only live processes keep the group
            os.killpg(server.pid, 0)  # ProcessLookupError once the whole group is gone
            time.sleep(0.2)
        os.killpg(server.pid, signal.SIGKILL)
    server.wait()


def test_without_an_active_run_nothing_is_logged(checkpoint, backbone, caplog):
    assert mlflow.active_run() is None
    config = ServingConfig(image_size=IMAGE_SIZE)
    assert log_policy(checkpoint, backbone, config, registered_name=NAME, closed_loop={}) is None
    assert f"the policy is not registered as {NAME}" in caplog.text
