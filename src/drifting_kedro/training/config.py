"""Training configuration: one dataclass, validated on construction, stored in every checkpoint."""

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from drifting_kedro.features.backbone import available_backbones
from drifting_kedro.model.config import policy_config

LOSS_MODES = ("conditional", "queue", "hybrid")
HEADS = ("drifting", "diffusion", "flow")
STRATEGIES = ("ddp", "fsdp")


@dataclass
class TrainConfig:
    """All the torchrun trainer needs; the train node writes it to `<run_dir>/config.json`."""

    run_dir: str
    table_path: str  # parquet of unified, per-frame actions/states (train split)
    stats_path: str  # normalization statistics json
    feature_paths: dict[str, str]  # dataset -> feature store (HDF5); unused when online
    model_size: str = "tiny"
    model_overrides: dict = field(default_factory=dict)  # PolicyConfig fields
    head: str = "drifting"  # drifting (1 step) | diffusion | flow (multi-step baselines)
    action_horizon: int = 16
    batch_size: int = 32  # observations per rank per micro-batch
    grad_accum_steps: int = 1
    max_steps: int = 1000
    lr: float = 1e-3
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    grad_clip: float = 2.0
    ema_decay: float = 0.999
    loss_mode: str = "conditional"
    generations: int = 8  # G noise draws per observation
    neighbor_positives: int = 0  # extra positives: chunks starting this many frames around t
    temperatures: tuple[float, ...] = (0.02, 0.05, 0.2)
    hybrid_mse_weight: float = 1.0
    queue_size: int = 4096
    cfg_alpha_max: float = 1.0  # 1 disables classifier-free guidance training
    cfg_power: float = 3.0  # p(alpha) ∝ alpha^-k
    dataset_weights: dict[str, float] = field(default_factory=dict)  # default: by size
    # dataset -> std of Gaussian noise on its normalized state (proprio augmentation), so the
    # policy cannot copy where the arm is instead of reading where the object is
    state_noise: dict[str, float] = field(default_factory=dict)
    strategy: str = "ddp"
    num_workers: int = 0
    log_every: int = 10
    checkpoint_every: int = 200
    keep_every: int = 0  # also keep checkpoints/step_<N>.pt every N steps (0: last.pt only)
    seed: int = 0
    bf16: str = "auto"  # auto = bf16 autocast on CUDA only
    stop_after_step: int | None = None  # stop (as if killed) after this step; for resume tests
    # Online VLM (003 §2.3): the backbone encodes frames inside the step, LoRA staged in at
    # lora_start_step on the q/v projections of its last lora_layers language-model layers.
    online_backbone: str = ""  # a build_backbone name; "" = precomputed features (default)
    online_backbone_options: dict = field(default_factory=dict)  # build_backbone keywords
    frame_paths: dict[str, str] = field(default_factory=dict)  # dataset -> frame store (online)
    lora_start_step: int = 5000  # frozen VLM before: random generator gradients would corrupt it
    lora_rank: int = 16
    lora_alpha: float = 32.0
    lora_layers: int = 4
    lora_lr_ratio: float = 0.1  # LoRA lr = lr * ratio, on the same warmup-cosine schedule

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)
        self.temperatures = tuple(self.temperatures)
        checks = [
            (self.head in HEADS, f"train.head={self.head!r} is not one of {HEADS}"),
            (
                self.loss_mode in LOSS_MODES,
                f"train.loss_mode={self.loss_mode!r} not in {LOSS_MODES}",
            ),
            (self.strategy in STRATEGIES, f"train.strategy={self.strategy!r} not in {STRATEGIES}"),
            (self.batch_size >= 1, f"train.batch_size must be >= 1, got {self.batch_size}"),
            (self.max_steps >= 1, f"train.max_steps must be >= 1, got {self.max_steps}"),
            (
                self.generations >= 2 or self.head != "drifting",
                f"train.generations must be >= 2 for the drifting loss, got {self.generations}",
            ),
            (
                self.action_horizon >= 1,
                f"train.action_horizon must be >= 1, got {self.action_horizon}",
            ),
            (
                self.cfg_alpha_max >= 1.0,
                f"train.cfg_alpha_max must be >= 1, got {self.cfg_alpha_max}",
            ),
            (
                self.grad_accum_steps >= 1,
                f"train.grad_accum_steps must be >= 1, got {self.grad_accum_steps}",
            ),
            (self.keep_every >= 0, f"train.keep_every must be >= 0, got {self.keep_every}"),
            (
                all(std >= 0 for std in self.state_noise.values()),
                f"train.state_noise stds must be >= 0, got {self.state_noise}",
            ),
            (self.bf16 in ("auto", "on", "off"), f"train.bf16={self.bf16!r} not in auto/on/off"),
            (
                bool(self.feature_paths) or bool(self.online_backbone),
                "train needs feature stores (vlm_features), or online_backbone with frame_paths",
            ),
            (
                not self.online_backbone or self.online_backbone in available_backbones(),
                f"train.online_backbone={self.online_backbone!r} is not one of "
                f"{available_backbones()} (empty for precomputed features)",
            ),
            (
                bool(self.frame_paths) or not self.online_backbone,
                f"train.online_backbone={self.online_backbone!r} needs train.frame_paths "
                "(dataset -> frame store of ingest)",
            ),
            (
                self.lora_start_step >= 0,
                f"train.lora_start_step must be >= 0, got {self.lora_start_step}",
            ),
            (self.lora_rank >= 1, f"train.lora_rank must be >= 1, got {self.lora_rank}"),
            (self.lora_alpha > 0, f"train.lora_alpha must be > 0, got {self.lora_alpha}"),
            (self.lora_layers >= 1, f"train.lora_layers must be >= 1, got {self.lora_layers}"),
            (
                self.lora_lr_ratio > 0,
                f"train.lora_lr_ratio must be > 0, got {self.lora_lr_ratio}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        self._check_model()

    def _check_model(self) -> None:
        """Build the policy config now, so a bad override (e.g. flash-attn on a CPU machine)
        fails in the launching process with the parameter's name, not inside a rank."""
        try:
            policy_config(
                self.model_size,
                action_horizon=self.action_horizon,
                head=self.head,
                **self.model_overrides,
            )
        except ValueError as error:
            raise ValueError(f"train.trainer (model_size / model_overrides): {error}") from error

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: Path) -> "TrainConfig":
        return cls(**json.loads(Path(path).read_text()))
