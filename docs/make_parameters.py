"""Write docs/parameters.md from conf/base, conf/smoke and the config dataclasses.

Run from anywhere: `python docs/make_parameters.py`. Defaults come from the YAML files and the
dataclasses themselves; only the meanings live here, and a parameter without one is an error,
so a new parameter cannot land without its line. tests/test_docs.py checks the page is current.
"""

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from drifting_kedro.launch import LaunchConfig
from drifting_kedro.sim.record import RecordingConfig
from drifting_kedro.sources import SourceConfig
from drifting_kedro.training.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "parameters.md"
PIPELINES = ("ingest", "features", "train", "evaluate")

MEANINGS: dict[str, str] = {
    # parameters_ingest.yml
    "demonstrations": "simulated datasets recorded by their scripted experts before ingest, "
    "one `RecordingConfig` each (fields below); closed-loop evaluation runs their simulators",
    "demonstrations[].name": "a simulated task (`drifting_kedro.sim.registry`), also the "
    "dataset's registry name",
    "demonstrations[].root": "where the LeRobot v3 dataset is recorded, and found on later runs "
    "(reused only if recorded with the same settings)",
    "demonstrations[].num_episodes": "successful demonstrations to keep (failed expert "
    "episodes are dropped and counted)",
    "demonstrations[].seed": "first demonstration seed; demonstrations use even seeds, "
    "evaluation odd ones",
    "demonstrations[].image_size": "rendered camera size",
    "demonstrations[].use_videos": "cameras as LeRobot's AV1 video (lossy) instead of PNG images",
    "demonstrations[].steps_after_success": "end each demonstration this many steps after the "
    "task first succeeds (`null`: the task's full length); closed-loop episodes end at success, "
    "so later frames teach nothing a rollout needs",
    "ingest.sources": "other datasets to read, one `SourceConfig` each (fields below); "
    "simulated ones go in `demonstrations`",
    "ingest.sources[].name": "registry name (`drifting_kedro.action_space.REGISTRY`)",
    "ingest.sources[].kind": "`lerobot_v3` \\| `rlbench` \\| `dexgraspnet`",
    "ingest.sources[].root": "local directory of the dataset",
    "ingest.sources[].repo_id": "hub id (`lerobot_v3` only), used when `root` is empty",
    "ingest.sources[].max_episodes": "read at most this many episodes (`null`: all)",
    "ingest.sources[].options": "adapter keywords: `lerobot_v3` cameras (`all` or a list; "
    "default: the registry's); `rlbench` tasks, cameras; "
    "`dexgraspnet` scenes, robot, camera, max_grasps_per_object",
    "ingest.frames_dir": "where the per-dataset HDF5 frame stores are written",
    "ingest.image_size": "every camera is resized to this square size for the backbone",
    "ingest.on_error": "`raise` \\| `skip`: what a bad episode (NaN, wrong width, no language, "
    "unreadable LeRobot file) does",
    "ingest.val_fraction": "last episodes of each dataset held out for offline metrics",
    "data_videos.episodes": "first episodes per dataset rendered to captioned mp4",
    "data_videos.width": "video width in pixels",
    # parameters_features.yml
    "features.backbone": "`small-real` \\| `qwen3vl` \\| `paligemma2` \\| `qwen3vl-tiny-random` "
    "\\| `paligemma2-tiny-random`",
    "features.backbone_options": "keywords for the backbone, e.g. `model_path` of a local "
    "Qwen3-VL / PaliGemma2 copy, `image_stride` (32 \\| 16) of `small-real`",
    "features.device": "`cpu` or `cuda` (each torchrun rank then uses its own GPU)",
    "features.batch_size": "frames per backbone forward pass",
    "features.staging_dir": "resumable per-backbone cache of feature stores; versions link to it",
    # parameters_train.yml
    "train.runs_dir": "parent of each training run's working folder `<runs_dir>/<mlflow run id>`",
    "train.resume_from": "a run folder to continue, from its newest intact checkpoint and with "
    "its own configuration (docs/distributed.md)",
    "train.trainer": "keyword arguments of `TrainConfig` (all fields below)",
    "train.trainer.model_overrides.action_patch": "consecutive actions per generator token",
    # parameters_evaluate.yml
    "evaluate.checkpoint": "`''`: the catalog's `policy_checkpoint`; or a kept "
    "`<runs_dir>/<run>/checkpoints/step_<N>.pt`, evaluated with the statistics stored in it",
    "evaluate.use_ema": "evaluate the EMA weights (else the raw model weights)",
    "evaluate.sampling_steps": "sampler steps K of a diffusion / flow baseline checkpoint "
    "(a drifting checkpoint always acts in 1)",
    "evaluate.offline.generations": "draws per observation for MMD and multimodality",
    "evaluate.offline.max_samples": "validation observations scored offline",
    "evaluate.closed_loop.episodes": "seeded episodes per `demonstrations` dataset (odd seeds, "
    "disjoint from the demonstrations)",
    "evaluate.closed_loop.replan_every": "steps executed from each predicted chunk",
    "evaluate.closed_loop.temporal_ensemble": "predict every step and average overlapping "
    "chunks (ACT) instead of replanning",
    "evaluate.closed_loop.videos": "rollout videos kept per dataset",
    "evaluate.closed_loop.threads": "torch threads for the rollouts (null: torch's default, all "
    "cores); seeded episodes replay exactly only at the same count",
    "evaluate.closed_loop.parallel_envs": "episodes stepped side by side, their policy calls "
    "batched into one backbone and one generator pass (each episode keeps its own noise draws)",
    "evaluate.latency.repeats": "timed calls per generator",
    "evaluate.latency.baseline_steps": "step counts of the multi-step diffusion baseline timed "
    "against the 1-step policy",
    "evaluate.register_model.enabled": "log the evaluated policy as an MLflow model of the run "
    "and register it (serving.md)",
    "evaluate.register_model.name": "registered model name; each `kedro run` adds a version "
    "tagged with its success rates",
    # TrainConfig (train.trainer.*)
    "train.trainer.run_dir": "set by the train node: the run folder",
    "train.trainer.table_path": "set by the train node: train-split parquet of unified actions",
    "train.trainer.stats_path": "set by the train node: normalization statistics json",
    "train.trainer.feature_paths": "set by the train node: dataset → feature store (HDF5)",
    "train.trainer.model_size": "`tiny` (CPU) \\| `B` (768×12) \\| `L` (1024×24)",
    "train.trainer.model_overrides": "any `PolicyConfig` field (`drifting_kedro.model`)",
    "train.trainer.head": "`drifting` (1 step) \\| `diffusion` \\| `flow` (multi-step baselines)",
    "train.trainer.action_horizon": "actions per predicted chunk",
    "train.trainer.batch_size": "observations per rank per micro-batch",
    "train.trainer.grad_accum_steps": "micro-batches per optimizer step",
    "train.trainer.max_steps": "optimizer steps",
    "train.trainer.lr": "AdamW peak learning rate",
    "train.trainer.weight_decay": "AdamW weight decay",
    "train.trainer.betas": "AdamW betas",
    "train.trainer.warmup_steps": "linear warm-up steps before the cosine decay",
    "train.trainer.min_lr_ratio": "cosine decays to `lr * min_lr_ratio`",
    "train.trainer.grad_clip": "gradient-norm clip",
    "train.trainer.ema_decay": "EMA decay of the evaluated weights",
    "train.trainer.loss_mode": "`conditional` \\| `queue` \\| `hybrid` (see concepts.md)",
    "train.trainer.generations": "G noise draws per observation (negatives of the field)",
    "train.trainer.neighbor_positives": "extra positives: chunks starting this many frames "
    "around t",
    "train.trainer.temperatures": "field temperatures τ, summed after per-τ normalization",
    "train.trainer.hybrid_mse_weight": "MSE weight of the `hybrid` loss",
    "train.trainer.queue_size": "sample-queue length of the `queue` loss",
    "train.trainer.cfg_alpha_max": "CFG scale α drawn in [1, max]; 1 disables CFG training",
    "train.trainer.cfg_power": "p(α) ∝ α^-k",
    "train.trainer.dataset_weights.aloha_sim_transfer_cube": "the transfer cube's share of "
    "each batch (relative to the other datasets' weights)",
    "train.trainer.dataset_weights.fetch_pick_and_place_abs": "pick-and-place's share of each "
    "batch",
    "train.trainer.state_noise.fetch_pick_and_place_abs": "std of the noise on Fetch's "
    "normalized state (0.3: 2.6 cm in x and y), so the policy reads the block from the images",
    "train.trainer.dataset_weights": "dataset → sampling weight (default: by size)",
    "train.trainer.state_noise": "dataset → std of Gaussian noise on its normalized input state "
    "(labels stay clean), so the policy reads objects from the images instead of copying the "
    "arm's position (evaluation.md)",
    "train.trainer.strategy": "`ddp` \\| `fsdp` (shards the model)",
    "train.trainer.num_workers": "DataLoader workers per rank",
    "train.trainer.log_every": "steps between logged metrics (MLflow + `metrics.jsonl`)",
    "train.trainer.checkpoint_every": "steps between `checkpoints/last.pt` writes",
    "train.trainer.keep_every": "also keep `checkpoints/step_<N>.pt` every N steps (0: off), "
    "to evaluate several budgets of one run",
    "train.trainer.seed": "seed of noise, CFG α and batch order (per rank)",
    "train.trainer.bf16": "`auto` (bf16 autocast on CUDA only) \\| `on` \\| `off`",
    "train.trainer.stop_after_step": "stop as if killed after this step (resume tests); a "
    "resume clears it",
    "train.trainer.online_backbone": "online VLM: a backbone name encoding frames inside the "
    "step; `''` = precomputed features (see gpu.md)",
    "train.trainer.online_backbone_options": "online VLM: `build_backbone` keywords "
    "(e.g. `model_path`)",
    "train.trainer.frame_paths": "online VLM: dataset → frame store of ingest",
    "train.trainer.lora_start_step": "online VLM: step at which LoRA training starts "
    "(frozen VLM before)",
    "train.trainer.lora_rank": "online VLM: LoRA rank",
    "train.trainer.lora_alpha": "online VLM: LoRA alpha",
    "train.trainer.lora_layers": "online VLM: last language-model layers given LoRA (q/v proj)",
    "train.trainer.lora_lr_ratio": "online VLM: LoRA lr = `lr * lora_lr_ratio`",
    # LaunchConfig (train_launch.*, features_launch.*)
    "launch.nproc_per_node": "processes (ranks) per node; GPUs per node on a GPU machine",
    "launch.nnodes": "nodes; > 1 needs `rdzv_endpoint`",
    "launch.node_rank": "this node's index in [0, nnodes)",
    "launch.rdzv_endpoint": "`host:port` of the rendezvous (node 0); empty = `--standalone`",
    "launch.rdzv_backend": "torchrun rendezvous backend",
    "launch.rdzv_id": "rendezvous id shared by the nodes of one job",
    "launch.max_restarts": "torchrun restarts of a failed worker group",
    "launch.threads_per_process": "`OMP_NUM_THREADS` of each rank",
}


class Text(str):
    """A table cell shown as is, not as a YAML value."""


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted leaves of a YAML tree; a list of mappings is one leaf, shown as its length."""
    out: dict[str, Any] = {}
    if isinstance(tree, dict):
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(tree, list) and tree and all(isinstance(v, dict) for v in tree):
        out[prefix] = Text(f"list of {len(tree)}")
    else:
        out[prefix] = tree
    return out


def read(env: str, pipeline: str) -> dict[str, Any]:
    path = ROOT / "conf" / env / f"parameters_{pipeline}.yml"
    return (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}


def load(env: str, pipeline: str) -> dict[str, Any]:
    return flatten(read(env, pipeline))


def environments() -> list[str]:
    """`base`, then every other folder of conf/ in name order: a new environment is tabled
    without being listed here (one without `demonstrations` adds no row)."""
    others = sorted(p.name for p in (ROOT / "conf").iterdir() if p.is_dir() and p.name != "base")
    return ["base", *others]


def recordings_table() -> list[str]:
    """One row per `demonstrations` entry of each environment, with the defaults it takes."""
    names = [f.name for f in dataclasses.fields(RecordingConfig)]
    lines = [
        "| env | " + " | ".join(f"`{name}`" for name in names) + " |",
        "|---" * (len(names) + 1) + "|",
    ]
    for env in environments():
        for entry in read(env, "ingest").get("demonstrations", []):
            values = dataclasses.asdict(RecordingConfig(**entry))
            lines.append(f"| {env} | " + " | ".join(_cell(values[n]) for n in names) + " |")
    return lines


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return Text("required")


def _cell(value: Any) -> str:
    if value is None:
        return "`null`"
    if isinstance(value, Text):
        return value
    return f"`{value!r}`" if value == "" else f"`{value}`"


def meaning(key: str) -> str:
    for launch in ("train_launch.", "features_launch."):
        key = key.replace(launch, "launch.", 1) if key.startswith(launch) else key
    if key not in MEANINGS:
        raise KeyError(f"parameter {key!r} has no meaning in docs/make_parameters.py MEANINGS")
    return MEANINGS[key]


def render() -> str:
    lines = [
        "# Parameters reference",
        "",
        "<!-- Generated by `python docs/make_parameters.py`; tests/test_docs.py checks it. -->",
        "",
        "Every parameter of `conf/base/parameters_*.yml` with its base value, the `smoke` "
        "override (blank: inherited from base), and what it does. Environments overlay base "
        "leaf by leaf: `conf/<env>/parameters_<pipeline>.yml` names only the keys it changes "
        "(a list, such as `demonstrations`, is replaced whole), and so does `--params`.",
        "The train node checks `train`, `train.trainer` and `train_launch` before torchrun "
        "starts: an unknown key is an error naming the nearest valid one "
        "(`train.resume_form is not an option; did you mean train.resume_from?`), a value of "
        "the wrong type or range one naming the option (`train.trainer.lr must be > 0, got -1`).",
        "",
    ]
    for pipeline in PIPELINES:
        base, smoke = load("base", pipeline), load("smoke", pipeline)
        lines += [
            f"## parameters_{pipeline}.yml",
            "",
            "| parameter | base | smoke | meaning |",
            "|---|---|---|---|",
        ]
        for key, value in base.items():
            override = _cell(smoke[key]) if key in smoke and smoke[key] != value else ""
            lines.append(f"| `{key}` | {_cell(value)} | {override} | {meaning(key)} |")
        lines.append("")
    sections = (
        (
            "RecordingConfig: each entry of `demonstrations`",
            "drifting_kedro.sim.record.RecordingConfig",
            "demonstrations[]",
            RecordingConfig,
        ),
        (
            "SourceConfig: each entry of `ingest.sources`",
            "drifting_kedro.sources.SourceConfig",
            "ingest.sources[]",
            SourceConfig,
        ),
        (
            "TrainConfig: `train.trainer`",
            "drifting_kedro.training.config.TrainConfig",
            "train.trainer",
            TrainConfig,
        ),
        (
            "LaunchConfig: `train_launch` and `features_launch`",
            "drifting_kedro.launch.LaunchConfig",
            "launch",
            LaunchConfig,
        ),
    )
    for title, where, prefix, cls in sections:
        lines += [f"## {title}", "", f"`{where}`.", "", "| field | default | meaning |"]
        lines.append("|---|---|---|")
        for f in dataclasses.fields(cls):
            lines.append(f"| `{f.name}` | {_cell(_default(f))} | {meaning(f'{prefix}.{f.name}')} |")
        lines.append("")
        if cls is RecordingConfig:
            lines += [
                "The lists the environments set (an environment without one records base's):",
                "",
                *recordings_table(),
                "",
            ]
    return "\n".join(lines)


if __name__ == "__main__":
    OUT.write_text(render())
