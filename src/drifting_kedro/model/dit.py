"""DiT action generator: noise + VLM features of one observation -> an action chunk in one pass.

Laid out like facebookresearch/DiT's models.py (embedders, core blocks, the model, helpers, sizes).
The model works in normalized units of the 128-D unified action space: normalization happens
before it and denormalization after it, and quaternions are unit-normalized only after
denormalization (`action_space.normalize_quaternions`), never here.
"""

import logging
import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from drifting_kedro.model.config import PolicyConfig, policy_config

logger = logging.getLogger(__name__)

# Keys of the conditioning dict shared by `generate`, the baseline heads and the trainer.
COND_KEYS = (
    "vlm_tokens",  # [B, L, vlm_hidden] VLM hidden states, padded to L
    "vlm_mask",  # [B, L] bool, True = real token
    "token_camera",  # [B, L] long, camera index per token; LANGUAGE_TOKEN for language
    "token_frame",  # [B, L] long, observation frame per token (optional, default 0)
    "pooled",  # [B, vlm_hidden] pooled VLM vector
    "embodiment_id",  # [B] long
    "state",  # [B, state_dim] unified normalized proprio state
    "state_mask",  # [B, state_dim] 1 where the embodiment has that state dim
    "action_mask",  # [B, action_dim] 1 on the embodiment's active action dims
    "cfg_alpha",  # [B] classifier-free guidance scale alpha >= 1
)
OPTIONAL_COND_KEYS = ("token_frame",)
LANGUAGE_TOKEN = -1  # token_camera value of language tokens


class Context(NamedTuple):
    """Projected VLM tokens of B observations, ready for cross-attention."""

    tokens: torch.Tensor  # [B, L, H]
    attn_mask: torch.Tensor  # [B, 1, 1, L] bool, True = attend
    valid: torch.Tensor  # [B] bool, False when an observation has no real token


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    # x [B, T, H]; shift, scale [B, H]
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


#################################################################################
#                 Embedding Layers for Noise, Context and Conditions            #
#################################################################################


class ScalarEmbedder(nn.Module):
    """Embeds one scalar per sample (diffusion/flow time, CFG scale alpha) as sin-cos then MLP.

    `scale` maps the scalar's natural range onto DiT's [0, 1000) timestep range, where the
    sinusoid frequencies are spread.
    """

    def __init__(self, hidden_size: int, scale: float, frequency_size: int = 256):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(frequency_size, hidden_size),
            nn.SiLU(),
            nn.Linear(hidden_size, hidden_size),
        )
        self.scale = scale
        self.frequency_size = frequency_size

    def forward(self, value: torch.Tensor) -> torch.Tensor:
        freq = sinusoidal_embedding(value * self.scale, self.frequency_size)  # [B, F]
        return self.mlp(freq.to(self.mlp[0].weight.dtype))  # [B, H]


class NoiseTokenizer(nn.Module):
    """Noise (or a noisy action for the baselines) -> one token per `action_patch` steps.

    Patching consecutive steps into one token (DiT's patch size, for time) divides the
    generator's cost by the patch; a 50-step chunk in patches of 5 runs on 10 tokens.
    The time-position embedding starts as sin-cos and is learned; RoPE in self-attention adds
    relative positions, this one also tells cross-attention queries where they sit in the chunk.
    """

    def __init__(self, config: PolicyConfig):
        super().__init__()
        self.patch = config.action_patch
        self.proj = nn.Linear(config.action_patch * config.noise_dim, config.hidden_size)
        self.pos_embed = nn.Parameter(torch.zeros(1, config.num_action_tokens, config.hidden_size))

    def forward(self, noise: torch.Tensor) -> torch.Tensor:
        n, t, d = noise.shape
        patches = noise.reshape(n, t // self.patch, self.patch * d)  # [B, T/p, p*d]
        return self.proj(patches) + self.pos_embed  # [B, T/p, H]


class ContextEmbedder(nn.Module):
    """VLM tokens -> cross-attention context, tagged with their camera (or language), frame and
    position within that view.

    Cross-attention is blind to token order, so without the position a view's feature map is a
    bag of cells: a small encoder's 3x3 map then cannot say where the cube is. The position is
    the token's index among the tokens of its (camera, frame), added as a fixed sin-cos code
    (ViT / MAE); VLM hidden states that already carry positions are unharmed by it.
    """

    def __init__(self, config: PolicyConfig):
        super().__init__()
        self.proj = nn.Linear(config.vlm_hidden_size, config.hidden_size)
        self.norm = nn.LayerNorm(config.hidden_size, eps=1e-6)
        self.camera_embed = nn.Embedding(config.num_cameras, config.hidden_size)
        self.language_embed = nn.Parameter(torch.zeros(config.hidden_size))
        self.frame_embed = nn.Embedding(config.num_frames, config.hidden_size)
        self.num_frames = config.num_frames
        self.num_groups = (config.num_cameras + 1) * config.num_frames  # language is a camera
        table = sincos_embedding_1d(config.hidden_size, torch.arange(config.max_vlm_tokens))
        self.register_buffer("position_table", table, persistent=False)  # [max tokens, H]

    def forward(
        self, tokens: torch.Tensor, token_camera: torch.Tensor, token_frame: torch.Tensor
    ) -> torch.Tensor:
        x = self.norm(self.proj(tokens))  # [B, L, H]
        camera = self.camera_embed(token_camera.clamp(min=0))  # [B, L, H]
        is_language = (token_camera == LANGUAGE_TOKEN).unsqueeze(-1)  # [B, L, 1]
        source = torch.where(is_language, self.language_embed.to(camera.dtype), camera)
        positions = view_positions(token_camera, token_frame, self.num_frames, self.num_groups)
        position = self.position_table[positions].to(x.dtype)  # [B, L, H]
        return x + source + self.frame_embed(token_frame) + position  # [B, L, H]


class ProprioEmbedder(nn.Module):
    """Unified state -> [B, H]; the mask is an input too, so an absent dim differs from a zero."""

    def __init__(self, config: PolicyConfig):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(2 * config.state_dim, config.hidden_size),
            nn.SiLU(),
            nn.Linear(config.hidden_size, config.hidden_size),
        )

    def forward(self, state: torch.Tensor, state_mask: torch.Tensor) -> torch.Tensor:
        present = state_mask > 0  # [B, S]
        state = torch.where(present, state, torch.zeros_like(state))  # absent dims may hold NaN
        return self.mlp(torch.cat([state, present.to(state.dtype)], dim=-1))  # [B, H]


#################################################################################
#                                 Core DiT Blocks                               #
#################################################################################


class SelfAttention(nn.Module):
    """Attention among the T action tokens, with QK-norm (RMSNorm on q and k) and RoPE."""

    def __init__(self, config: PolicyConfig):
        super().__init__()
        self.num_heads, self.head_dim = config.num_heads, config.head_dim
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.q_norm = nn.RMSNorm(config.head_dim, eps=1e-6)
        self.k_norm = nn.RMSNorm(config.head_dim, eps=1e-6)
        self.proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = config.dropout
        self.backend = config.attention_backend

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.num_heads, self.head_dim).unbind(2)  # [B,T,nh,hd]
        cos, sin = rope  # [T, hd]
        q = apply_rope(self.q_norm(q), cos[:, None], sin[:, None]).to(v.dtype)
        k = apply_rope(self.k_norm(k), cos[:, None], sin[:, None]).to(v.dtype)
        dropout = self.dropout if self.training else 0.0
        out = attention(q, k, v, dropout_p=dropout, backend=self.backend)  # [B, T, H]
        return self.proj(out)


class CrossAttention(nn.Module):
    """Action tokens attend to the projected VLM tokens of their observation.

    The G noise rows of one observation are folded into its query sequence ([B*G, T, H] ->
    [B, G*T, H]), which is exact because queries do not interact: each observation's keys and
    values are projected once and never copied G times.
    """

    def __init__(self, config: PolicyConfig):
        super().__init__()
        self.num_heads, self.head_dim = config.num_heads, config.head_dim
        self.q = nn.Linear(config.hidden_size, config.hidden_size)
        self.kv = nn.Linear(config.hidden_size, 2 * config.hidden_size)
        self.q_norm = nn.RMSNorm(config.head_dim, eps=1e-6)
        self.k_norm = nn.RMSNorm(config.head_dim, eps=1e-6)
        self.proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = config.dropout

    def forward(self, x: torch.Tensor, context: Context) -> torch.Tensor:
        (b, n, hidden), h = context.tokens.shape, self.num_heads
        q = self.q(x.reshape(b, -1, hidden)).view(b, -1, h, self.head_dim)  # [B, G*T, nh, hd]
        k, v = self.kv(context.tokens).view(b, n, 2, h, self.head_dim).unbind(2)  # [B, L, nh, hd]
        q, k = self.q_norm(q).to(v.dtype), self.k_norm(k).to(v.dtype)
        dropout = self.dropout if self.training else 0.0
        out = attention(q, k, v, context.attn_mask, dropout_p=dropout)  # [B, G*T, H]
        # An observation with no real token reads nothing.
        out = self.proj(out) * context.valid.to(out.dtype).view(b, 1, 1)
        return out.reshape(x.shape)  # [B*G, T, H]


class SwiGLU(nn.Module):
    def __init__(self, config: PolicyConfig):
        super().__init__()
        self.w_gate = nn.Linear(config.hidden_size, config.mlp_hidden_size)
        self.w_up = nn.Linear(config.hidden_size, config.mlp_hidden_size)
        self.w_down = nn.Linear(config.mlp_hidden_size, config.hidden_size)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.w_down(F.silu(self.w_gate(x)) * self.w_up(x)))


class DiTBlock(nn.Module):
    """adaLN-Zero self-attention, cross-attention to the VLM context, adaLN-Zero SwiGLU MLP."""

    def __init__(self, config: PolicyConfig):
        super().__init__()
        hidden = config.hidden_size
        self.norm1 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(config)
        self.norm2 = nn.LayerNorm(hidden, eps=1e-6)
        self.cross_attn = CrossAttention(config)
        self.norm3 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.mlp = SwiGLU(config)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 6 * hidden))

    def forward(
        self,
        x: torch.Tensor,
        c: torch.Tensor,
        context: Context,
        rope: tuple[torch.Tensor, torch.Tensor],
    ) -> torch.Tensor:
        modulation = self.adaLN_modulation(c).chunk(6, dim=1)  # 6 x [B, H]
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = modulation
        h = self.attn(modulate(self.norm1(x), shift_msa, scale_msa), rope)
        x = x + gate_msa.unsqueeze(1) * h
        x = x + self.cross_attn(self.norm2(x), context)
        x = x + gate_mlp.unsqueeze(1) * self.mlp(modulate(self.norm3(x), shift_mlp, scale_mlp))
        return x  # [B, T, H]


class FinalLayer(nn.Module):
    """adaLN-modulated norm, then the action head: each token -> its `action_patch` actions."""

    def __init__(self, config: PolicyConfig):
        super().__init__()
        self.action_dim = config.action_dim
        self.norm_final = nn.LayerNorm(config.hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(config.hidden_size, config.action_patch * config.action_dim)
        self.adaLN_modulation = nn.Sequential(
            nn.SiLU(), nn.Linear(config.hidden_size, 2 * config.hidden_size)
        )

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        out = self.linear(modulate(self.norm_final(x), shift, scale))  # [B, T/p, p*A]
        return out.reshape(out.shape[0], -1, self.action_dim)  # [B, T, A]


#################################################################################
#                                 Drifting Policy                               #
#################################################################################


class DriftingPolicy(nn.Module):
    """One-step action generator: noise [B, T, d_noise] + observation -> actions [B, T, 128].

    c_global = pooled projection + embodiment embedding + CFG-scale embedding + proprio MLP
    (+ a timestep embedding for the diffusion/flow heads) modulates every block. The output is
    in normalized units and exactly zero on the embodiment's inactive dims; quaternions are
    unit-normalized after denormalization by `action_space.normalize_quaternions`, not here.
    """

    def __init__(self, config: PolicyConfig):
        super().__init__()
        self.config = config
        hidden = config.hidden_size
        self.noise_tokenizer = NoiseTokenizer(config)
        self.context_embedder = ContextEmbedder(config)
        self.pooled_proj = nn.Sequential(
            nn.Linear(config.vlm_hidden_size, hidden), nn.LayerNorm(hidden, eps=1e-6)
        )
        self.embodiment_embed = nn.Embedding(config.num_embodiments, hidden)
        self.cfg_embedder = ScalarEmbedder(hidden, scale=1000.0 / config.cfg_alpha_max)
        self.proprio_embedder = ProprioEmbedder(config)
        # The multi-step heads condition on their time t in [0, 1]; the drifting head has none.
        self.t_embedder = (
            ScalarEmbedder(hidden, scale=1000.0) if config.head != "drifting" else None
        )
        self.blocks = nn.ModuleList([DiTBlock(config) for _ in range(config.depth)])
        self.final_layer = FinalLayer(config)
        cos, sin = rope_angles(torch.arange(config.num_action_tokens), config.head_dim)
        self.register_buffer("rope_cos", cos, persistent=False)  # [T, hd]
        self.register_buffer("rope_sin", sin, persistent=False)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        def _basic_init(module: nn.Module) -> None:
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

        self.apply(_basic_init)

        # Time positions of the action tokens start as sin-cos, then are learned:
        tokens = torch.arange(self.config.num_action_tokens)
        pos = sincos_embedding_1d(self.config.hidden_size, tokens)
        self.noise_tokenizer.pos_embed.data.copy_(pos.unsqueeze(0))

        # Embedding tables as DiT's label table:
        nn.init.normal_(self.embodiment_embed.weight, std=0.02)
        nn.init.normal_(self.context_embedder.camera_embed.weight, std=0.02)
        nn.init.normal_(self.context_embedder.frame_embed.weight, std=0.02)
        nn.init.normal_(self.context_embedder.language_embed, std=0.02)

        # Scalar embedding MLPs as DiT's timestep MLP:
        for embedder in (self.cfg_embedder, self.t_embedder):
            if embedder is not None:
                nn.init.normal_(embedder.mlp[0].weight, std=0.02)
                nn.init.normal_(embedder.mlp[2].weight, std=0.02)

        for block in self.blocks:
            # Zero-out adaLN modulation: every gate starts at 0, each block starts as identity:
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
            # Zero-out the ungated cross-attention output (as PixArt-alpha), identity too:
            nn.init.zeros_(block.cross_attn.proj.weight)
            nn.init.zeros_(block.cross_attn.proj.bias)

        # Zero-out output layers, so the initial action chunk is exactly 0 (DiT's convention):
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].weight)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.linear.weight)
        nn.init.zeros_(self.final_layer.linear.bias)

    def forward(  # noqa: PLR0917 (the signature the trainer and heads share)
        self,
        noise: torch.Tensor,
        vlm_tokens: torch.Tensor,
        vlm_mask: torch.Tensor,
        token_camera: torch.Tensor,
        pooled: torch.Tensor,
        embodiment_id: torch.Tensor,
        state: torch.Tensor,
        state_mask: torch.Tensor,
        action_mask: torch.Tensor,
        cfg_alpha: torch.Tensor,
        timestep: torch.Tensor | None = None,
        token_frame: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Actions [N, T, action_dim] for noise [N, T, d_noise], N = B * G.

        Conditioning tensors have the observation batch B; noise rows b*G ... b*G+G-1 belong to
        observation b (G = N / B), so G draws per observation share its VLM tokens uncopied.
        `timestep` ([N], in [0, 1]) is required by the diffusion/flow heads and refused by the
        drifting head.
        """
        if token_frame is None:
            token_frame = torch.zeros_like(token_camera)
        g = self._check_inputs(
            noise,
            timestep,
            {
                "vlm_tokens": vlm_tokens,
                "vlm_mask": vlm_mask,
                "token_camera": token_camera,
                "token_frame": token_frame,
                "pooled": pooled,
                "embodiment_id": embodiment_id,
                "state": state,
                "state_mask": state_mask,
                "action_mask": action_mask,
                "cfg_alpha": cfg_alpha,
            },
        )
        valid = vlm_mask.any(dim=1)  # [B]
        context = Context(
            tokens=self.context_embedder(vlm_tokens, token_camera, token_frame),  # [B, L, H]
            # A row with no real token attends to everything (no NaN); its read-out is zeroed.
            attn_mask=(vlm_mask | ~valid[:, None])[:, None, None, :],  # [B, 1, 1, L]
            valid=valid,
        )
        c = (
            self.pooled_proj(pooled)
            + self.embodiment_embed(embodiment_id)
            + self.cfg_embedder(cfg_alpha)
            + self.proprio_embedder(state, state_mask)
        ).repeat_interleave(g, dim=0)  # [N, H]
        if self.t_embedder is not None:
            c = c + self.t_embedder(timestep)
        rope = (self.rope_cos, self.rope_sin)
        x = self.noise_tokenizer(noise)  # [N, T, H]
        for block in self.blocks:
            x = block(x, c, context, rope)  # [N, T, H]
        x = self.final_layer(x, c)  # [N, T, A]
        active = (action_mask > 0).repeat_interleave(g, dim=0).unsqueeze(1)  # [N, 1, A]
        return x.masked_fill(~active, 0.0)  # inactive dims exactly zero

    def generate(
        self,
        cond: dict[str, torch.Tensor],
        num_samples: int = 1,
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """G action chunks per observation in one forward pass: [B, G, T, action_dim].

        `noise` [B*G, T, d_noise] replaces the draw from `generator` (rows of one observation
        adjacent), so a batch of episodes can each draw from its own generator.
        Gradients flow (the drifting loss trains through this); wrap in `torch.no_grad()` to act.
        """
        if self.config.head != "drifting":
            raise ValueError(
                f"generate() is the one-step drifting sampler; this model has "
                f"head={self.config.head!r}: sample with drifting_kedro.model.baseline heads"
            )
        if num_samples < 1:
            raise ValueError(f"generate num_samples must be >= 1, got {num_samples}")
        check_cond(cond)
        b = cond["vlm_tokens"].shape[0]
        if noise is None:
            noise = self.draw_noise(b * num_samples, cond["vlm_tokens"].device, generator)
        actions = self(noise, **cond)  # [B*G, T, A]
        return actions.view(b, num_samples, *actions.shape[1:])

    def draw_noise(
        self, n: int, device: torch.device, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Standard normal input noise [n, T, d_noise] in the model's dtype."""
        shape = (n, self.config.action_horizon, self.config.noise_dim)
        dtype = self.noise_tokenizer.proj.weight.dtype
        return torch.randn(shape, generator=generator, device=device, dtype=dtype)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def configure_optimizers(
        self, weight_decay: float, lr: float, betas: tuple[float, float]
    ) -> torch.optim.AdamW:
        """AdamW decaying weight matrices only; norms, biases and embeddings are not decayed."""
        if weight_decay < 0 or lr <= 0:
            raise ValueError(
                f"optimizer needs weight_decay >= 0 and lr > 0, got {weight_decay}, {lr}"
            )
        embeddings = {id(m.weight) for m in self.modules() if isinstance(m, nn.Embedding)}
        embeddings |= {
            id(self.noise_tokenizer.pos_embed),
            id(self.context_embedder.language_embed),
        }
        params = [p for p in self.parameters() if p.requires_grad]
        decay = [p for p in params if p.dim() >= 2 and id(p) not in embeddings]
        no_decay = [p for p in params if p.dim() < 2 or id(p) in embeddings]
        logger.info(
            "optimizer: %d decayed tensors (%d params), %d not decayed (%d params)",
            len(decay), sum(p.numel() for p in decay),
            len(no_decay), sum(p.numel() for p in no_decay),
        )  # fmt: skip
        groups = [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        fused = {"fused": True} if params and all(p.is_cuda for p in params) else {}
        return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), **fused)

    def _check_inputs(
        self, noise: torch.Tensor, timestep: torch.Tensor | None, cond: dict[str, torch.Tensor]
    ) -> int:
        """Clear errors for malformed inputs; returns G, the noise draws per observation."""
        cfg = self.config
        vlm_tokens, vlm_mask = cond["vlm_tokens"], cond["vlm_mask"]
        if vlm_tokens.dim() != 3:
            raise ValueError(
                f"policy input vlm_tokens must be [B, L, D], got {tuple(vlm_tokens.shape)}"
            )
        b, n = vlm_tokens.shape[:2]
        shapes = {
            "vlm_tokens": (b, n, cfg.vlm_hidden_size),
            "vlm_mask": (b, n),
            "token_camera": (b, n),
            "token_frame": (b, n),
            "pooled": (b, cfg.vlm_hidden_size),
            "embodiment_id": (b,),
            "state": (b, cfg.state_dim),
            "state_mask": (b, cfg.state_dim),
            "action_mask": (b, cfg.action_dim),
            "cfg_alpha": (b,),
        }
        expected = {name: (cond[name], shape) for name, shape in shapes.items()}
        expected["noise"] = (noise, (None, cfg.action_horizon, cfg.noise_dim))
        for name, (tensor, shape) in expected.items():
            if tensor.dim() != len(shape) or any(
                want is not None and have != want
                for have, want in zip(tensor.shape, shape, strict=True)
            ):
                want = ", ".join("N" if s is None else str(s) for s in shape)
                raise ValueError(
                    f"policy input {name} has shape {tuple(tensor.shape)}, expected [{want}] "
                    f"(B={b} observations, L={n} VLM tokens)"
                )
        if not 1 <= n <= cfg.max_vlm_tokens:
            raise ValueError(
                f"policy got {n} VLM tokens per sample; it accepts 1..{cfg.max_vlm_tokens} "
                "(raise policy.max_vlm_tokens or pool/truncate the features)"
            )
        if vlm_mask.dtype != torch.bool:
            raise ValueError(
                f"policy input vlm_mask must be bool (True = token), got {vlm_mask.dtype}"
            )
        if noise.shape[0] % b:
            raise ValueError(
                f"policy noise batch {noise.shape[0]} is not a multiple of the {b} observations"
            )
        g = noise.shape[0] // b
        if cfg.head == "drifting" and timestep is not None:
            raise ValueError("policy.head='drifting' is one-step and takes no timestep")
        if cfg.head != "drifting" and (timestep is None or tuple(timestep.shape) != (b * g,)):
            got = None if timestep is None else tuple(timestep.shape)
            raise ValueError(
                f"policy.head={cfg.head!r} needs timestep of shape [{b * g}] in [0, 1], got {got}"
            )
        _check_range(
            "embodiment_id", cond["embodiment_id"], 0, cfg.num_embodiments - 1, "num_embodiments"
        )
        _check_range(
            "token_camera", cond["token_camera"], LANGUAGE_TOKEN, cfg.num_cameras - 1, "num_cameras"
        )
        _check_range("token_frame", cond["token_frame"], 0, cfg.num_frames - 1, "num_frames")
        return g


def check_cond(cond: dict[str, torch.Tensor]) -> None:
    """A conditioning dict has exactly the COND_KEYS (token_frame optional)."""
    missing = set(COND_KEYS) - set(OPTIONAL_COND_KEYS) - set(cond)
    unknown = set(cond) - set(COND_KEYS)
    if missing or unknown:
        raise ValueError(
            f"policy conditioning dict: missing keys {sorted(missing)}, unknown keys "
            f"{sorted(unknown)}; expected {list(COND_KEYS)}"
        )


#################################################################################
#                                     Helpers                                   #
#################################################################################


_HALF_DTYPES = (torch.float16, torch.bfloat16)


def _check_range(name: str, ids: torch.Tensor, low: int, high: int, field: str) -> None:
    if ids.numel() and (int(ids.min()) < low or int(ids.max()) > high):
        raise ValueError(
            f"policy input {name} has values in [{int(ids.min())}, {int(ids.max())}], "
            f"outside [{low}, {high}] (raise policy.{field} or fix the data)"
        )


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    *,
    dropout_p: float = 0.0,
    backend: str = "sdpa",
) -> torch.Tensor:
    """q [B, Tq, nh, hd], k/v [B, Tk, nh, hd], bool mask [B, 1, 1, Tk] -> [B, Tq, nh*hd].

    The mask is True where a key takes part. flash-attn's kernel serves the unmasked
    self-attention when configured and the inputs are half precision on CUDA; everything else
    goes through PyTorch's scaled_dot_product_attention.
    """
    if backend == "flash" and attn_mask is None and q.is_cuda and q.dtype in _HALF_DTYPES:
        from flash_attn import flash_attn_func

        out = flash_attn_func(q, k, v, dropout_p=dropout_p)  # [B, Tq, nh, hd]
    else:
        out = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
            attn_mask=attn_mask, dropout_p=dropout_p,
        ).transpose(1, 2)  # fmt: skip
    return out.reshape(*out.shape[:2], -1)


def rope_angles(
    positions: torch.Tensor, dim: int, base: float = 10000.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin [P, dim] of rotary embeddings for integer positions (rotate-half layout)."""
    inv_freq = base ** (-torch.arange(0, dim, 2, dtype=torch.float32) / dim)  # [dim/2]
    angles = positions.float()[:, None] * inv_freq[None]  # [P, dim/2]
    angles = torch.cat([angles, angles], dim=-1)  # [P, dim]
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate feature pairs of x [..., dim] by position angles, so q.k depends on m - n only."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """[N] possibly fractional scalars -> [N, dim] cos/sin features (GLIDE / DiT)."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half
    )
    args = t.float()[:, None] * freqs[None]  # [N, half]
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
    return embedding


def view_positions(
    token_camera: torch.Tensor, token_frame: torch.Tensor, num_frames: int, num_groups: int
) -> torch.Tensor:
    """Index [B, L] of each token among the earlier tokens of its (camera, frame) group."""
    group = (token_camera - LANGUAGE_TOKEN) * num_frames + token_frame
    one_hot = F.one_hot(group, num_groups)  # [B, L, groups]
    return (one_hot.cumsum(dim=1) * one_hot).sum(dim=-1) - 1


def sincos_embedding_1d(dim: int, positions: torch.Tensor) -> torch.Tensor:
    """Fixed sin-cos position table [P, dim] (MAE / DiT's 1-D variant)."""
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2))  # [dim/2]
    out = positions.double()[:, None] * omega[None]  # [P, dim/2]
    table = torch.cat([out.sin(), out.cos()], dim=-1)
    if dim % 2:
        table = torch.cat([table, torch.zeros_like(table[:, :1])], dim=-1)
    return table.float()


#################################################################################
#                                  Policy Sizes                                 #
#################################################################################


def build_policy(size: str = "tiny", **overrides) -> DriftingPolicy:
    """A policy of a named size (`config.POLICY_SIZES`: tiny, B, L) with field overrides."""
    config = policy_config(size, **overrides)
    model = DriftingPolicy(config)
    logger.info(
        "policy %s (head=%s): %.2fM parameters", size, config.head, model.num_parameters() / 1e6
    )
    return model
