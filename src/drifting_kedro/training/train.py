"""The torchrun trainer: `torchrun ... -m drifting_kedro.training.train --config C`.

Reads like DiT's train.py: helpers first, then `main`. Rank logic lives here and nowhere else:
per-rank seeds, rank 0 alone writes checkpoints and logs, losses all-reduced before logging.
DDP by default, FSDP (fully_shard) as an option; gloo on CPU, nccl on GPU. A rank never outlives
its launcher: it stops when torchrun's agent or the process that started torchrun is gone.
"""

import argparse
import copy
import ctypes
import datetime
import json
import logging
import math
import os
import signal
import socket
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_model_state_dict,
    set_state_dict,
)
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from drifting_kedro.drifting import (
    SampleQueue,
    drifting_loss,
    ema_decay_at,
    sample_cfg_alpha,
    update_ema,
)
from drifting_kedro.launch import LAUNCHER_PID_ENV
from drifting_kedro.locking import remove_stale_temporaries_in
from drifting_kedro.model import (
    DiffusionHead,
    DriftingPolicy,
    FlowMatchingHead,
    make_head,
    policy_config,
)
from drifting_kedro.normalization import DatasetStats
from drifting_kedro.tracking import logger_from_environment
from drifting_kedro.training.checkpoint import (
    copy_checkpoint,
    latest_intact_checkpoint,
    load_checkpoint,
    registry_rows,
    save_checkpoint,
)
from drifting_kedro.training.config import TrainConfig
from drifting_kedro.training.data import (
    PolicySamples,
    StepBatchSampler,
    collate_samples,
    perturb_state,
    policy_inputs,
    sample_weights,
    state_noise_scales,
)
from drifting_kedro.training.online import OnlineVLM, build_online_vlm

logger = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


#################################################################################
#                                Training Helpers                               #
#################################################################################


def setup_distributed() -> tuple[int, int, torch.device]:
    """Join torchrun's process group (or a one-process group when run directly)."""
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if "RANK" in os.environ:
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
    else:
        dist.init_process_group(
            backend, init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1
        )
    rank, world = dist.get_rank(), dist.get_world_size()
    if torch.cuda.is_available():
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        return rank, world, torch.device("cuda", local_rank)
    return rank, world, torch.device("cpu")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LauncherGoneError(RuntimeError):
    """The process that launched this rank has died; the rank stops before writing more."""


@dataclass(frozen=True)
class LauncherWatch:
    """The processes a rank must not outlive: torchrun's agent (its parent) and the process that
    ran torchrun (the Kedro node), so a killed launcher never leaves ranks training on their own,
    writing checkpoints and logging into an MLflow run that has ended."""

    agent: int | None  # parent pid under torchrun, else None
    launcher: int | None  # pid from DRIFTING_KEDRO_LAUNCHER_PID, set by run_torchrun

    @classmethod
    def arm(cls) -> "LauncherWatch":
        """Under torchrun on Linux, the kernel also SIGKILLs this rank the moment the agent dies."""
        agent = None
        if "TORCHELASTIC_RUN_ID" in os.environ:
            agent = os.getppid()
            if sys.platform.startswith("linux"):
                ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        launcher = os.environ.get(LAUNCHER_PID_ENV)
        return cls(agent=agent, launcher=int(launcher) if launcher else None)

    def check(self) -> None:
        if self.agent is not None and os.getppid() != self.agent:
            raise LauncherGoneError(f"torchrun's agent (pid {self.agent}) is gone: stopping")
        if self.launcher is not None and not _alive(self.launcher):
            raise LauncherGoneError(
                f"the process that ran torchrun (pid {self.launcher}) is gone: stopping"
            )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: an existence check
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        pass
    return True


def warmup_cosine(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """LR multiplier: linear warmup, then cosine decay to `min_ratio`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def step_generator(cfg: TrainConfig, rank: int, step: int, device: torch.device) -> torch.Generator:
    """Noise and alpha of a step come from (seed, rank, step): a resumed run redraws them."""
    generator = torch.Generator(device=device)
    generator.manual_seed((cfg.seed * 1_000_003 + rank) * 1_000_003 + step)
    return generator


def chunk_mask(batch: dict[str, torch.Tensor], horizon: int) -> torch.Tensor:
    """The action mask repeated over the chunk, flattened: [B, T*128]."""
    return batch["action_mask"][:, None, :].expand(-1, horizon, -1).flatten(1)


def other_samples(actions: torch.Tensor) -> torch.Tensor:
    """For each observation, the other observations' chunks: [B, B-1, D] (CFG negatives)."""
    count = actions.shape[0]
    keep = ~torch.eye(count, dtype=torch.bool, device=actions.device)
    return actions[None].expand(count, -1, -1)[keep].view(count, count - 1, -1)


def drifting_objective(wrapped, model, batch, cfg: TrainConfig, *, generator, queue):
    """Conditional drifting loss on G generations per observation (queue / hybrid as options).

    Noise is drawn here and the call goes through the DDP/FSDP wrapper, so gradients sync.
    """
    count, horizon = batch["actions"].shape[:2]
    device = batch["actions"].device
    alpha = sample_cfg_alpha(
        count, cfg.cfg_alpha_max, cfg.cfg_power, generator=generator, device=device
    )
    noise = model.draw_noise(count * cfg.generations, device, generator)
    generated = wrapped(noise, **policy_inputs(batch, alpha)).view(
        count, cfg.generations, horizon, -1
    )  # [B, G, T, 128]
    x = generated.flatten(2)  # [B, G, D]
    positives = batch["positives"].flatten(2)  # [B, P, D]
    uncond = other_samples(batch["actions"].flatten(1)) if cfg.cfg_alpha_max > 1 else None
    loss, stats = drifting_loss(
        x,
        positives,
        mode=cfg.loss_mode,
        mask=chunk_mask(batch, horizon),
        temperatures=cfg.temperatures,
        y_uncond=uncond,
        cfg_alpha=alpha if uncond is not None else None,
        queue=queue,
        mse_weight=cfg.hybrid_mse_weight,
    )
    return loss, stats, generated.mean(dim=1)


@torch.no_grad()
def per_dataset_mse(prediction, batch, names: list[str]) -> dict[str, float]:
    """Masked MSE of the mean prediction per dataset in this batch (normalized units)."""
    mask = batch["action_mask"][:, None, :].float()
    error = ((prediction - batch["actions"]) ** 2 * mask).sum(dim=(1, 2)) / (
        mask.sum(dim=(1, 2)) * prediction.shape[1]
    )
    out = {}
    for d, name in enumerate(names):
        selected = batch["dataset_id"] == d
        if selected.any():
            out[f"train/mse/{name}"] = float(error[selected].mean())
    return out


def all_reduce_mean(value: float, device: torch.device) -> float:
    tensor = torch.tensor(value, device=device, dtype=torch.float64)
    dist.all_reduce(tensor)
    return float(tensor) / dist.get_world_size()


def wrap_model(model: torch.nn.Module, cfg: TrainConfig, device: torch.device) -> torch.nn.Module:
    if cfg.strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for block in model.blocks:
            fully_shard(block)
        return fully_shard(model)
    return DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None
    )


#################################################################################
#                                  Training Loop                                #
#################################################################################


@dataclass
class Trainer:
    """Everything one rank trains and checkpoints; `wrapped` is the DDP/FSDP view of `model`."""

    cfg: TrainConfig
    model: DriftingPolicy
    wrapped: torch.nn.Module
    ema: DriftingPolicy
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    queue: SampleQueue | None
    head: DiffusionHead | FlowMatchingHead | None  # None: the one-step drifting head
    dataset_names: list[str]
    norm_stats: DatasetStats  # the statistics the samples are normalized with, saved alongside
    device: torch.device
    rank: int
    state_noise: torch.Tensor  # [datasets] std of the input-state noise (perturb_state)
    online: OnlineVLM | None = None  # the VLM encoding each batch (online mode), else None

    def train_step(self, batches, step: int) -> dict[str, float]:
        """One optimizer step over `grad_accum_steps` micro-batches; returns rank-local stats."""
        cfg = self.cfg
        self.wrapped.train()
        generator = step_generator(cfg, self.rank, step, self.device)
        use_bf16 = cfg.bf16 == "on" or (cfg.bf16 == "auto" and self.device.type == "cuda")
        stats: dict[str, float] = {"train/loss": 0.0}
        for _ in range(cfg.grad_accum_steps):
            batch = {
                k: v.to(self.device, non_blocking=True) if isinstance(v, torch.Tensor) else v
                for k, v in next(batches).items()
            }
            if self.online is not None:
                batch = self.online.encode(batch, step)
            if self.state_noise.any():
                batch = perturb_state(batch, self.state_noise, generator)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=use_bf16):
                if self.head is None:
                    loss, loss_stats, prediction = drifting_objective(
                        self.wrapped, self.model, batch, cfg, generator=generator, queue=self.queue
                    )
                    stats.update(per_dataset_mse(prediction.float(), batch, self.dataset_names))
                else:
                    no_guidance = torch.ones(len(batch["actions"]), device=self.device)
                    loss, loss_stats = self.head.loss(
                        self.wrapped, batch["actions"], policy_inputs(batch, no_guidance)
                    )
            (loss / cfg.grad_accum_steps).backward()
            stats["train/loss"] += float(loss.detach()) / cfg.grad_accum_steps
            stats.update({f"train/{k}": float(v) for k, v in loss_stats.items() if k != "loss"})
        stats["train/grad_norm"] = float(
            torch.nn.utils.clip_grad_norm_(self.wrapped.parameters(), cfg.grad_clip)
        )
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        if self.online is not None:
            stats.update(self.online.optimizer_step(step))
        update_ema(self.ema, self.model, ema_decay_at(step, cfg.ema_decay))
        stats["train/lr"] = self.scheduler.get_last_lr()[0]
        return stats

    def save(self, step: int, path: Path) -> None:
        """Gather full state on every rank (FSDP needs all ranks); rank 0 writes it atomically."""
        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        model_state, optim_state = get_state_dict(self.wrapped, self.optimizer, options=options)
        ema_state = get_model_state_dict(self.ema, options=options)
        rng_states = [None] * dist.get_world_size()
        dist.all_gather_object(rng_states, torch.get_rng_state())
        divergence = (
            self.replica_divergence(self.model.parameters()) if self.cfg.strategy == "ddp" else None
        )
        online = None
        if self.online is not None:  # adapters are replicated under DDP and FSDP alike
            online = self.online.state_dict()
            online["replica_divergence"] = self.replica_divergence(self.online.lora)
        if self.rank == 0:
            state = {
                "model": model_state,
                "ema": ema_state,
                "optimizer": optim_state,
                "scheduler": self.scheduler.state_dict(),
                "queue": self.queue.state_dict() if self.queue is not None else {},
                "rng": rng_states,  # per rank: the baselines' noise and dropout
                "step": step,
                "replica_divergence": divergence,
                "train_config": asdict(self.cfg),
                "model_config": asdict(self.model.config),
                "dataset_names": self.dataset_names,
                "norm_stats": self.norm_stats.to_dict(),
                "datasets": registry_rows(self.dataset_names),
                **({"online_vlm": online} if online is not None else {}),
            }
            save_checkpoint(state, path)
        dist.barrier()

    def replica_divergence(self, parameters: Iterable[torch.Tensor]) -> float:
        """Largest difference of a parameter checksum between replicated ranks (0 when in sync)."""
        checksum = torch.stack([p.detach().double().abs().sum() for p in parameters])
        gathered = [torch.zeros_like(checksum) for _ in range(dist.get_world_size())]
        dist.all_gather(gathered, checksum)
        return max(float((other - gathered[0]).abs().max()) for other in gathered)

    def load(self, path: Path) -> int:
        """Restore a checkpoint written by `save`; returns the step to continue from."""
        return self.restore(load_checkpoint(path, map_location=self.device), path)

    def restore(self, state: dict, path: Path) -> int:
        """Restore the loaded checkpoint `path`; returns the step to continue from."""
        set_state_dict(
            self.wrapped,
            self.optimizer,
            model_state_dict=state["model"],
            optim_state_dict=state["optimizer"],
        )
        set_model_state_dict(self.ema, state["ema"], options=StateDictOptions(full_state_dict=True))
        self.scheduler.load_state_dict(state["scheduler"])
        if self.queue is not None:
            self.queue.load_state_dict(state["queue"])
        if self.online is not None:
            if "online_vlm" not in state:
                raise ValueError(
                    f"{path} was trained on precomputed features; resume it without "
                    "train.online_backbone, or start the online run in a new run_dir"
                )
            self.online.load_state_dict(state["online_vlm"])
        if len(state["rng"]) == dist.get_world_size():
            torch.set_rng_state(state["rng"][self.rank])
        return int(state["step"])


def build_trainer(
    cfg: TrainConfig,
    samples: PolicySamples,
    norm_stats: DatasetStats,
    device: torch.device,
    rank: int,
) -> Trainer:
    def schedule(step: int) -> float:
        return warmup_cosine(step, cfg.warmup_steps, cfg.max_steps, cfg.min_lr_ratio)

    online = build_online_vlm(cfg, device, schedule) if cfg.online_backbone else None
    model_config = policy_config(
        cfg.model_size,
        action_horizon=cfg.action_horizon,
        vlm_hidden_size=(
            online.backbone.hidden_size
            if online is not None
            else next(iter(samples.stores.values())).hidden_size
        ),
        head=cfg.head,
        cfg_alpha_max=max(cfg.cfg_alpha_max, 1.0),
        **cfg.model_overrides,
    )
    model = DriftingPolicy(model_config).to(device)
    ema = copy.deepcopy(model).requires_grad_(False)
    wrapped = wrap_model(model, cfg, device)
    if cfg.strategy == "fsdp":
        wrap_model(ema, cfg, device)  # sharded like the model, so EMA updates stay shard-local
    # After wrapping: FSDP replaces the parameters with sharded ones the optimizer must hold.
    optimizer = model.configure_optimizers(cfg.weight_decay, cfg.lr, cfg.betas)
    flat_dim = cfg.action_horizon * model_config.action_dim
    return Trainer(
        cfg=cfg,
        model=model,
        ema=ema,
        wrapped=wrapped,
        optimizer=optimizer,
        scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, schedule),
        queue=SampleQueue(cfg.queue_size, flat_dim) if cfg.loss_mode == "queue" else None,
        head=make_head(model_config) if cfg.head != "drifting" else None,
        dataset_names=list(samples.dataset_names),
        norm_stats=norm_stats,
        device=device,
        rank=rank,
        online=online,
        state_noise=state_noise_scales(samples.dataset_names, cfg.state_noise),
    )


def main(config_path: Path) -> Path:
    """Train to `max_steps`, resuming from the run's newest intact checkpoint if it has one."""
    launcher = LauncherWatch.arm()
    cfg = TrainConfig.load(config_path)
    rank, world, device = setup_distributed()
    try:
        return train(cfg, rank, world, device, launcher)
    finally:
        dist.destroy_process_group()


def train(
    cfg: TrainConfig, rank: int, world: int, device: torch.device, launcher: LauncherWatch
) -> Path:
    run_dir = Path(cfg.run_dir)
    torch.manual_seed(cfg.seed * world + rank)
    metric_logger = logger_from_environment(rank)
    norm_stats = DatasetStats.from_dict(json.loads(Path(cfg.stats_path).read_text()))
    samples = PolicySamples(
        pd.read_parquet(cfg.table_path),
        norm_stats,
        cfg.feature_paths,
        cfg.action_horizon,
        cfg.neighbor_positives,
        frame_paths=cfg.frame_paths if cfg.online_backbone else None,
    )
    trainer = build_trainer(cfg, samples, norm_stats, device, rank)
    checkpoints = run_dir / "checkpoints"
    last_path, final_path = checkpoints / "last.pt", checkpoints / "final.pt"
    resume = latest_intact_checkpoint(checkpoints, map_location=device)
    start_step = trainer.restore(resume.state, resume.path) if resume is not None else 0
    saved_step, saved_path = start_step, resume.path if resume is not None else None
    if rank == 0:
        remove_stale_temporaries_in(checkpoints)
        if resume is not None and resume.skipped:
            for reason in resume.skipped:
                logger.warning("%s", reason)
            logger.warning("Resuming from %s (step %d) instead", resume.path, start_step)
        _truncate_history(run_dir / "metrics.jsonl", start_step)
        parameters = trainer.model.num_parameters()
        metric_logger.log_params({"train.model_parameters": parameters, "train.world_size": world})
        logger.info(
            "Policy %s (%s head), %.2fM parameters, %d samples of %s, world size %d, from step %d",
            cfg.model_size, cfg.head, parameters / 1e6, len(samples), samples.dataset_names,
            world, start_step,
        )  # fmt: skip

    sampler = StepBatchSampler(
        sample_weights(samples, cfg.dataset_weights),
        batch_size=cfg.batch_size,
        accum_steps=cfg.grad_accum_steps,
        start_step=start_step,
        max_steps=cfg.max_steps,
        seed=cfg.seed,
        rank=rank,
    )
    batches = iter(
        DataLoader(
            samples,
            batch_sampler=sampler,
            collate_fn=collate_samples,
            num_workers=cfg.num_workers,
            persistent_workers=cfg.num_workers > 0,
        )
    )
    progress = tqdm(
        range(start_step, cfg.max_steps),
        initial=start_step,
        total=cfg.max_steps,
        desc="train",
        unit="step",
        disable=rank != 0,
    )
    window_start, window_steps = time.perf_counter(), 0
    for step in progress:
        launcher.check()
        stats = trainer.train_step(batches, step)
        done, window_steps = step + 1, window_steps + 1
        if done % cfg.log_every == 0 or done == cfg.max_steps:
            elapsed = time.perf_counter() - window_start
            stats["train/loss"] = all_reduce_mean(stats["train/loss"], device)
            stats["train/samples_per_s"] = (
                window_steps * cfg.batch_size * cfg.grad_accum_steps * world / elapsed
            )
            window_start, window_steps = time.perf_counter(), 0
            if rank == 0:
                metric_logger.log_metrics(stats, step=done)
                _append_history(run_dir / "metrics.jsonl", done, stats)
                progress.set_postfix(loss=f"{stats['train/loss']:.4f}")
        kept = cfg.keep_every > 0 and done % cfg.keep_every == 0
        if done % cfg.checkpoint_every == 0 or done == cfg.max_steps or kept:
            trainer.save(done, last_path)
            saved_step, saved_path = done, last_path
        if kept and rank == 0:
            copy_checkpoint(last_path, last_path.with_name(f"step_{done}.pt"))
        if cfg.stop_after_step is not None and done >= cfg.stop_after_step:
            break
    if rank == 0 and saved_step == cfg.max_steps and saved_path != final_path:
        copy_checkpoint(saved_path, final_path)
    dist.barrier()
    return final_path


def _append_history(path: Path, step: int, metrics: dict[str, float]) -> None:
    with path.open("a") as handle:
        handle.write(json.dumps({"step": step, **metrics}) + "\n")


def _truncate_history(path: Path, step: int) -> None:
    """Drop history lines past the resumed step (written by a run killed after its checkpoint)."""
    if not path.exists():
        return
    lines = [line for line in path.read_text().splitlines() if json.loads(line)["step"] <= step]
    path.write_text("".join(line + "\n" for line in lines))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", type=Path, required=True, help="TrainConfig json")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    main(parser.parse_args().config)
