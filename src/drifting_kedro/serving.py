"""The trained policy as an MLflow pyfunc model: logged, registered and served (docs/serving.md).

A request holds one observation per row, as a pandas DataFrame or a list of dicts:

    dataset             str          a dataset the policy was trained on
    instruction         str          the task in words
    state               list[float]  the native state, the dataset's state width
    image.<camera>      str          base64 PNG of that camera's RGB frame, one column per camera
                                     key of the dataset (e.g. `image.observation.images.top`)

The answer is one native action chunk per row, `[T, native action width]` as nested lists.
Every row draws its noise from a generator seeded with the model's `seed` (0 unless logged
otherwise), so a request always gets the same chunk: `InferencePolicy.predict_chunk` with
`torch.Generator().manual_seed(seed)`. A bad request raises an `MlflowException` with
INVALID_PARAMETER_VALUE, which `mlflow models serve` answers with HTTP 400 and the message.

The model needs nothing but its artifacts: the self-contained checkpoint (weights, normalization
statistics, registry rows, configuration) and the backbone module itself, pickled with its
weights, so serving reads neither the project's data, nor the installed weight packages, nor
the Hugging Face hub.
"""

import base64
import binascii
import contextlib
import io
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.types.schema import Array, ColSpec, DataType, Schema
from PIL import Image, UnidentifiedImageError

from drifting_kedro.evaluation.policy import InferencePolicy
from drifting_kedro.features.backbone import Backbone
from drifting_kedro.training.checkpoint import load_checkpoint, save_checkpoint

logger = logging.getLogger(__name__)

IMAGE_PREFIX = "image."
MODEL_NAME = "policy"  # the model's folder inside the MLflow run
CHECKPOINT_FILE, BACKBONE_FILE = "policy.pt", "backbone.pt"
# What acting needs of a training checkpoint; the optimizer, scheduler, queue and RNG states
# only continue training and would double the served file.
INFERENCE_KEYS = (
    "model",
    "ema",
    "model_config",
    "train_config",
    "dataset_names",
    "norm_stats",
    "datasets",
    "online_vlm",
    "step",
)


@dataclass(frozen=True)
class ServingConfig:
    """How the served policy acts: the evaluation's settings, logged as the pyfunc model_config."""

    image_size: int  # every camera is resized to this square size, as ingest stored frames
    use_ema: bool = True
    num_steps: int = 1  # sampler steps (1 for the drifting head)
    seed: int = 0  # seed of every row's noise generator


class BadRequestError(MlflowException):
    """A request the policy cannot act on; the scoring server answers it with HTTP 400."""

    def __init__(self, message: str) -> None:
        super().__init__(message, error_code=INVALID_PARAMETER_VALUE)


class DriftingPolicyModel(mlflow.pyfunc.PythonModel):
    """`InferencePolicy` behind the pyfunc interface; built from the logged artifacts only."""

    def load_context(self, context) -> None:
        folder = Path(context.artifacts["policy"])
        checkpoint = load_checkpoint(folder / CHECKPOINT_FILE)
        # The backbone module was pickled by `log_policy` into this model's own artifacts.
        backbone = torch.load(folder / BACKBONE_FILE, map_location="cpu", weights_only=False)
        config = ServingConfig(**context.model_config)
        self.datasets = checkpoint["datasets"]
        self.seed = config.seed
        self.policy = InferencePolicy.from_checkpoint(
            checkpoint,
            backbone,
            image_size=config.image_size,
            use_ema=config.use_ema,
            num_steps=config.num_steps,
        )

    def predict(self, context, model_input: pd.DataFrame, params=None) -> list[list[list[float]]]:
        """One native chunk `[T, A]` per observation row (see the module docstring); a list of
        dicts is taken too."""
        del context, params
        rows = pd.DataFrame(model_input).to_dict("records")
        return [self._predict_row(number, row) for number, row in enumerate(rows)]

    def _predict_row(self, number: int, row: dict) -> list[list[float]]:
        dataset = row.get("dataset")
        if dataset not in self.datasets:
            raise BadRequestError(
                f"row {number}: dataset {dataset!r} is not one the policy was trained on "
                f"({', '.join(sorted(self.datasets))})"
            )
        spec = self.datasets[dataset]
        instruction = row.get("instruction")
        if not isinstance(instruction, str) or not instruction.strip():
            raise BadRequestError(f"row {number}: instruction must be a non-empty string")
        chunk = self.policy.predict_chunk(
            dataset,
            {camera: _decode_image(number, row, camera) for camera in spec["cameras"]},
            instruction,
            _native_state(number, row.get("state"), spec),
            generator=torch.Generator().manual_seed(self.seed),
        )
        return chunk.tolist()


def image_column(camera: str) -> str:
    return f"{IMAGE_PREFIX}{camera}"


def encode_png(image: np.ndarray) -> str:
    """An RGB frame [H, W, 3] uint8 as the base64 PNG text of a request's image column."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, np.uint8)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _decode_image(number: int, row: dict, camera: str) -> np.ndarray:
    column = image_column(camera)
    text = row.get(column)
    if not isinstance(text, str) or not text:
        raise BadRequestError(
            f"row {number}: dataset {row['dataset']!r} needs camera {camera!r} as a base64 PNG "
            f"in column {column!r}"
        )
    try:
        with Image.open(io.BytesIO(base64.b64decode(text, validate=True))) as image:
            return np.asarray(image.convert("RGB"))
    except (binascii.Error, UnidentifiedImageError, OSError, ValueError) as error:
        raise BadRequestError(
            f"row {number}: column {column!r} is not a base64-encoded PNG ({error})"
        ) from error


def _native_state(number: int, state, spec: dict) -> np.ndarray:
    names = spec["state_names"]
    try:
        values = np.asarray(state, dtype=np.float32)
    except (TypeError, ValueError) as error:
        raise BadRequestError(f"row {number}: state must be a list of numbers ({error})") from error
    if values.shape != (len(names),):
        raise BadRequestError(
            f"row {number}: dataset {spec['name']!r} needs a state of {len(names)} numbers "
            f"({', '.join(names)}), got shape {values.shape}"
        )
    if not np.isfinite(values).all():
        raise BadRequestError(f"row {number}: state holds NaN or infinite values")
    return values


def signature(datasets: dict[str, dict]) -> ModelSignature:
    """Typed request and answer. Camera columns are optional in the schema because each
    dataset needs its own; a missing one is reported by `predict`, naming the dataset."""
    cameras = sorted({camera for spec in datasets.values() for camera in spec["cameras"]})
    inputs = Schema(
        [
            ColSpec(DataType.string, "dataset"),
            ColSpec(DataType.string, "instruction"),
            ColSpec(Array(DataType.double), "state"),
            *(ColSpec(DataType.string, image_column(c), required=False) for c in cameras),
        ]
    )
    return ModelSignature(inputs, Schema([ColSpec(Array(Array(DataType.double)), "actions")]))


def input_example(checkpoint: dict, image_size: int) -> pd.DataFrame:
    """One observation of the first trained dataset: grey frames and the mean training state."""
    dataset = checkpoint["dataset_names"][0]
    spec = checkpoint["datasets"][dataset]
    mean = np.asarray(checkpoint["norm_stats"]["datasets"][dataset]["state"]["mean"])
    grey = np.full((image_size, image_size, 3), 128, np.uint8)
    return pd.DataFrame(
        [
            {
                "dataset": dataset,
                "instruction": spec["instruction"] or "<the task in words>",
                "state": mean[spec["state_indices"]].tolist(),
                **{image_column(camera): encode_png(grey) for camera in spec["cameras"]},
            }
        ]
    )


def log_policy(
    checkpoint: dict,
    backbone: Backbone,
    config: ServingConfig,
    *,
    registered_name: str,
    closed_loop: dict[str, dict[str, float]],
) -> str | None:
    """Log the policy as a pyfunc model into the active MLflow run and register it.

    The registered version is tagged `eval.<dataset>/<metric>` with the run's closed-loop
    results, and its description lists the success rates, so the registry compares versions.

    Args:
        checkpoint: a self-contained checkpoint (`training.checkpoint.self_contained`).
        backbone: the backbone the policy was evaluated with (pickled into the artifacts).
        config: how the served policy acts.
        registered_name: the registered model's name.
        closed_loop: the closed-loop metrics per dataset.

    Returns:
        The registered version, or None when no MLflow run is active (nothing is logged).
    """
    run = mlflow.active_run()
    if run is None:
        logger.warning("no active MLflow run: the policy is not registered as %s", registered_name)
        return None
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "policy"
        save_checkpoint(
            {key: checkpoint[key] for key in INFERENCE_KEYS if key in checkpoint},
            folder / CHECKPOINT_FILE,
        )
        torch.save(backbone, folder / BACKBONE_FILE)
        with _quiet_cloudpickle_notice():
            info = mlflow.pyfunc.log_model(
                name=MODEL_NAME,
                python_model=DriftingPolicyModel(),
                artifacts={"policy": str(folder)},
                model_config=asdict(config),
                signature=signature(checkpoint["datasets"]),
                input_example=input_example(checkpoint, config.image_size),
                pip_requirements=_requirements(),
                registered_model_name=registered_name,
            )
    version = str(info.registered_model_version)
    client = mlflow.MlflowClient()
    for dataset, metrics in closed_loop.items():
        for key, value in metrics.items():
            client.set_model_version_tag(
                registered_name, version, f"eval.{dataset}/{key}", str(value)
            )
    client.set_model_version_tag(registered_name, version, "train.step", str(checkpoint["step"]))
    client.update_model_version(
        registered_name, version, description=_description(checkpoint, closed_loop)
    )
    logger.info("registered the policy as %s version %s", registered_name, version)
    return version


@contextlib.contextmanager
def _quiet_cloudpickle_notice() -> Iterator[None]:
    """Hide MLflow's notice that a `python_model` object is pickled: the pickled class is this
    module's own, loaded back only by this project's code, so every run printing it says nothing."""

    def not_the_notice(record: logging.LogRecord) -> bool:
        return "serialized using CloudPickle" not in record.getMessage()

    pyfunc_logger = logging.getLogger("mlflow.pyfunc")
    pyfunc_logger.addFilter(not_the_notice)
    try:
        yield
    finally:
        pyfunc_logger.removeFilter(not_the_notice)


def _description(checkpoint: dict, closed_loop: dict[str, dict[str, float]]) -> str:
    lines = [
        f"- {dataset}: success {m['success_rate']:.0%} over {int(m['episodes'])} seeded episodes"
        for dataset, m in closed_loop.items()
    ]
    header = f"Drifting policy at training step {checkpoint['step']}; closed-loop evaluation:"
    return "\n".join([header, *lines])


def _requirements() -> list[str]:
    """The packages the served code imports, at the versions it was logged with; the
    drifting_kedro package itself comes from the environment (`--env-manager local`)."""
    packages = ("mlflow", "torch", "numpy", "pandas", "pillow", "h5py", "mujoco", "tokenizers")
    return [f"{name}=={metadata.version(name)}" for name in packages]
