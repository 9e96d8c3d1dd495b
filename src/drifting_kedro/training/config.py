"""Training configuration: one dataclass, validated on construction, stored in every checkpoint.

The train node builds it from `params:train` in the Kedro process, so an unknown key, a value of
the wrong type or out of range fails there with one message naming the option, before torchrun
starts; on resume it is the run's own configuration with the differing options applied.
"""

import dataclasses
import difflib
import json
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path

from drifting_kedro.drifting.loss import LOSS_MODES
from drifting_kedro.features.backbone import available_backbones
from drifting_kedro.launch import LaunchConfig
from drifting_kedro.model.config import HEADS, PolicyConfig, policy_config

STRATEGIES = ("ddp", "fsdp")
TRAIN_OPTIONS = ("runs_dir", "resume_from", "trainer")  # the keys of `params:train`
# Set by the train node from the catalog, never by `train.trainer`.
_NODE_SET = {
    name: "the train node"
    for name in ("run_dir", "table_path", "stats_path", "feature_paths", "frame_paths")
}
# PolicyConfig fields the trainer sets from its own options.
TRAINER_SET_MODEL_FIELDS = ("action_horizon", "head", "vlm_hidden_size", "cfg_alpha_max")
# Options a resumed run keeps from its checkpoint: they shape the model it restores.
FIXED_ON_RESUME = (
    "model_size",
    "model_overrides",
    "head",
    "action_horizon",
    "online_backbone",
    "online_backbone_options",
    "lora_rank",
    "lora_layers",
)


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
    # Online VLM: the backbone encodes frames inside the step, LoRA staged in at
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
        check_types(self, "train.trainer")
        self.betas = tuple(self.betas)
        self.temperatures = tuple(self.temperatures)
        for ok, message in self._rules():
            if not ok:
                raise ValueError(message)
        self._check_model()

    def _rules(self) -> list[tuple[bool, str]]:
        """(holds, error message) for every constraint on a value."""

        def must(name: str, ok: bool, rule: str) -> tuple[bool, str]:
            return ok, f"train.trainer.{name} must be {rule}, got {getattr(self, name)!r}"

        backbones = available_backbones()
        return [
            must("head", self.head in HEADS, f"one of {HEADS}"),
            must("loss_mode", self.loss_mode in LOSS_MODES, f"one of {LOSS_MODES}"),
            must("strategy", self.strategy in STRATEGIES, f"one of {STRATEGIES}"),
            must("bf16", self.bf16 in ("auto", "on", "off"), "one of auto, on, off"),
            must("batch_size", self.batch_size >= 1, ">= 1"),
            must("grad_accum_steps", self.grad_accum_steps >= 1, ">= 1"),
            must("max_steps", self.max_steps >= 1, ">= 1"),
            must("lr", self.lr > 0, "> 0"),
            must("weight_decay", self.weight_decay >= 0, ">= 0"),
            must("betas", all(0 <= b < 1 for b in self.betas), "in [0, 1)"),
            must("warmup_steps", self.warmup_steps >= 0, ">= 0"),
            must("min_lr_ratio", 0 <= self.min_lr_ratio <= 1, "in [0, 1]"),
            must("grad_clip", self.grad_clip > 0, "> 0"),
            must("ema_decay", 0 <= self.ema_decay <= 1, "in [0, 1]"),
            must(
                "generations",
                self.generations >= 2 or self.head != "drifting",
                ">= 2 for the drifting loss",
            ),
            must("neighbor_positives", self.neighbor_positives >= 0, ">= 0"),
            must("temperatures", bool(self.temperatures) and min(self.temperatures) > 0, "all > 0"),
            must("hybrid_mse_weight", self.hybrid_mse_weight >= 0, ">= 0"),
            must("queue_size", self.queue_size >= 1, ">= 1"),
            must("action_horizon", self.action_horizon >= 1, ">= 1"),
            must("cfg_alpha_max", self.cfg_alpha_max >= 1.0, ">= 1"),
            must("cfg_power", self.cfg_power >= 0, ">= 0"),
            must("dataset_weights", all(w >= 0 for w in self.dataset_weights.values()), "all >= 0"),
            must("state_noise", all(std >= 0 for std in self.state_noise.values()), "stds >= 0"),
            must("num_workers", self.num_workers >= 0, ">= 0"),
            must("log_every", self.log_every >= 1, ">= 1"),
            must("checkpoint_every", self.checkpoint_every >= 1, ">= 1"),
            must("keep_every", self.keep_every >= 0, ">= 0"),
            must("seed", self.seed >= 0, ">= 0"),
            must(
                "stop_after_step", self.stop_after_step is None or self.stop_after_step >= 1, ">= 1"
            ),
            (
                bool(self.feature_paths) or bool(self.online_backbone),
                "train needs feature stores (vlm_features), or train.trainer.online_backbone "
                "with frame stores",
            ),
            (
                not self.online_backbone or self.online_backbone in backbones,
                f"train.trainer.online_backbone={self.online_backbone!r} is not one of "
                f"{backbones} (empty for precomputed features)",
            ),
            (
                bool(self.frame_paths) or not self.online_backbone,
                f"train.trainer.online_backbone={self.online_backbone!r} needs train.frame_paths "
                "(dataset -> frame store of ingest)",
            ),
            must("lora_start_step", self.lora_start_step >= 0, ">= 0"),
            must("lora_rank", self.lora_rank >= 1, ">= 1"),
            must("lora_alpha", self.lora_alpha > 0, "> 0"),
            must("lora_layers", self.lora_layers >= 1, ">= 1"),
            must("lora_lr_ratio", self.lora_lr_ratio > 0, "> 0"),
        ]

    def _check_model(self) -> None:
        """Build the policy config now, so a bad override (e.g. flash-attn on a CPU machine)
        fails in the launching process with the parameter's name, not inside a rank."""
        check_options(
            PolicyConfig,
            self.model_overrides,
            "train.trainer.model_overrides",
            reserved={name: f"train.trainer.{name}" for name in TRAINER_SET_MODEL_FIELDS},
        )
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

    @classmethod
    def from_options(cls, trainer_options: dict, **node_fields) -> "TrainConfig":
        """`train.trainer` plus the fields the train node sets, each key checked first."""
        check_options(cls, trainer_options, "train.trainer", reserved=_NODE_SET)
        return cls(**node_fields, **trainer_options)


def check_train_options(train_options: dict) -> None:
    """The keys of `params:train` (a typo like `resume_form` would otherwise start a new run)."""
    check_keys(train_options, TRAIN_OPTIONS, "train")


def launch_config(options: dict, block: str) -> LaunchConfig:
    """`LaunchConfig` from a launch parameter block, e.g. `train_launch`, each key checked first."""
    check_options(LaunchConfig, options, block)
    return LaunchConfig(**options)


def check_keys(options: dict, valid: typing.Sequence[str], block: str) -> None:
    """Refuse a key `block` does not have, naming the nearest valid one."""
    for key in options:
        if key not in valid:
            close = difflib.get_close_matches(str(key), valid, n=1)
            hint = f"did you mean {block}.{close[0]}?" if close else f"valid: {', '.join(valid)}"
            raise ValueError(f"{block}.{key} is not an option; {hint}")


def check_options(cls: type, options: dict, block: str, reserved: dict | None = None) -> None:
    """Keys and value types of `options` for the dataclass `cls`, before `cls(**options)` would
    fail with a TypeError; `reserved` maps fields the options may not set to who sets them."""
    reserved = reserved or {}
    for key in options:
        if key in reserved:
            raise ValueError(f"{block}.{key} is set by {reserved[key]}; remove it from {block}")
    check_keys(options, [f.name for f in dataclasses.fields(cls) if f.name not in reserved], block)
    hints = typing.get_type_hints(cls)
    for key, value in options.items():
        if not _has_type(value, hints[key]):
            raise ValueError(f"{block}.{key} must be {_type_name(hints[key])}, got {value!r}")


def check_types(config: object, block: str) -> None:
    """The field values of a dataclass instance against their annotations."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if not _has_type(value, hints[f.name]):
            raise ValueError(f"{block}.{f.name} must be {_type_name(hints[f.name])}, got {value!r}")


def _has_type(value: object, hint: object) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        return any(_has_type(value, arg) for arg in args)
    if origin is dict:
        return isinstance(value, dict) and all(_has_type(v, args[1]) for v in value.values())
    if origin is tuple:
        if not isinstance(value, list | tuple):
            return False
        items = args[:1] * len(value) if args[-1] is Ellipsis else args
        return len(value) == len(items) and all(map(_has_type, value, items))
    if isinstance(value, bool):  # YAML's true/false are not numbers here
        return hint is bool
    return isinstance(value, int | float if hint is float else hint)


def _type_name(hint: object) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    if hint in names:
        return names[hint]
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        return " or ".join(
            "null" if a is type(None) else _type_name(a) for a in typing.get_args(hint)
        )
    if typing.get_origin(hint) is dict:
        return f"a mapping to {_type_name(typing.get_args(hint)[1])}s"
    if typing.get_origin(hint) is tuple:
        return "a list of numbers"
    return getattr(hint, "__name__", str(hint))


def check_action_horizon(longest: dict[str, int], horizon: int) -> str | None:
    """Refuse an action chunk longer than every training episode; name the datasets too short.

    Args:
        longest: dataset -> frames in its longest training episode.
        horizon: `train.trainer.action_horizon`.

    Returns:
        A warning naming the datasets whose every episode is shorter, or None.
    """
    short = {name: frames for name, frames in sorted(longest.items()) if frames < horizon}
    listed = ", ".join(f"{name} ({frames} frames)" for name, frames in short.items())
    if short and len(short) == len(longest):
        raise ValueError(
            f"train.trainer.action_horizon={horizon} is longer than every training episode "
            f"(longest per dataset: {listed}); every chunk would end in a repeated last action: "
            f"lower it to at most {max(short.values())}"
        )
    if short:
        return (
            f"train.trainer.action_horizon={horizon} is longer than every training episode of "
            f"{listed}: their chunks end in repeated last actions"
        )
    return None


def resume_config(
    run: TrainConfig, trainer_options: dict, step: int
) -> tuple[TrainConfig, list[str]]:
    """The configuration a resumed run continues with, and one line per option that differs.

    `run` is the configuration of the checkpoint at `step`. An option of the current parameters
    that differs from it is applied (line: old -> new), except where it cannot apply: options
    that shape the restored model, and a `max_steps` not above `step`, keep the run's value.
    """
    check_options(TrainConfig, trainer_options, "train.trainer", reserved=_NODE_SET)
    trainer_options = {"stop_after_step": None, **trainer_options}  # a simulated kill: one launch
    kept = {}
    for name, new in trainer_options.items():
        old = getattr(run, name)
        if name in FIXED_ON_RESUME and new != old:
            kept[name] = (
                f"train.trainer.{name}={new!r} would reshape the run's model: keeping {old!r}"
            )
        elif name == "max_steps" and new != old and new <= step:
            kept[name] = (
                f"train.trainer.max_steps={new} is not above the checkpoint's step {step}: "
                f"keeping the run's {old}"
            )
    resumed = dataclasses.replace(
        run, **{name: new for name, new in trainer_options.items() if name not in kept}
    )
    changed = [
        f"train.trainer.{name}: {getattr(run, name)!r} -> {getattr(resumed, name)!r}"
        for name in trainer_options
        if getattr(run, name) != getattr(resumed, name)
    ]
    return resumed, [*kept.values(), *changed]
