"""DriftingPolicy: shapes, masking, adaLN-Zero init, padding, RoPE, optimizer, overfitting."""

import pytest
import torch
from policy_helpers import (
    EMBODIMENT_DIMS,
    VLM_HIDDEN,
    action_mask_for,
    make_cond,
    perturb_zero_init,
)

from drifting_kedro.model import LANGUAGE_TOKEN, DriftingPolicy, build_policy, policy_config
from drifting_kedro.model.dit import Context, apply_rope, rope_angles, view_positions


@pytest.fixture
def model() -> DriftingPolicy:
    torch.manual_seed(0)
    return build_policy("tiny", vlm_hidden_size=VLM_HIDDEN).eval()


@pytest.fixture
def trained_like(model: DriftingPolicy) -> DriftingPolicy:
    """The tiny policy with its zero-initialized layers filled, so outputs are not all zero."""
    perturb_zero_init(model)
    return model


def test_forward_and_generate_shapes(model: DriftingPolicy) -> None:
    cond = make_cond(batch=3)
    noise = model.draw_noise(3, torch.device("cpu"))
    assert noise.shape == (3, 16, 32)
    assert model(noise, **cond).shape == (3, 16, 128)
    assert model.generate(cond, num_samples=5).shape == (3, 5, 16, 128)


def test_shared_context_equals_repeated_context(trained_like: DriftingPolicy) -> None:
    """G noise rows per observation read its tokens uncopied, exactly as a repeated batch would."""
    cond, g = make_cond(batch=3), 4
    noise = trained_like.draw_noise(3 * g, torch.device("cpu"), torch.Generator().manual_seed(1))
    shared = trained_like(noise, **cond)
    repeated = trained_like(noise, **{k: v.repeat_interleave(g, dim=0) for k, v in cond.items()})
    torch.testing.assert_close(shared, repeated, atol=1e-5, rtol=1e-5)
    samples = trained_like.generate(cond, num_samples=g)
    assert not torch.allclose(samples[:, 0], samples[:, 1])  # different noise, different chunks


def test_action_patches_run_fewer_tokens_with_the_same_chunk_shape() -> None:
    """Patches of 5 steps: a 50-step chunk runs on 10 tokens and keeps its [T, 128] output."""
    torch.manual_seed(0)
    model = build_policy("tiny", vlm_hidden_size=VLM_HIDDEN, action_horizon=50, action_patch=5)
    perturb_zero_init(model)
    assert model.noise_tokenizer.pos_embed.shape[1] == 10
    cond = make_cond(batch=2)
    chunks = model.generate(cond, num_samples=3)
    assert chunks.shape == (2, 3, 50, 128)
    assert not torch.allclose(chunks[:, :, 0], chunks[:, :, 1])  # each step has its own action
    with pytest.raises(ValueError, match="action_patch"):
        policy_config("tiny", action_horizon=50, action_patch=7)


@pytest.mark.parametrize("embodiment", sorted(EMBODIMENT_DIMS))
def test_inactive_dims_are_exactly_zero(trained_like: DriftingPolicy, embodiment: int) -> None:
    cond = make_cond(batch=2)
    cond["embodiment_id"][:] = embodiment
    cond["action_mask"] = action_mask_for([embodiment, embodiment])
    actions = trained_like.generate(cond, num_samples=3)  # [B, G, T, A]
    active = torch.zeros(128, dtype=torch.bool)
    active[EMBODIMENT_DIMS[embodiment]] = True
    assert torch.all(actions[..., ~active] == 0)
    assert torch.all(actions[..., active] != 0)


def test_initial_output_is_exactly_zero(model: DriftingPolicy) -> None:
    """DiT convention: zero-initialized final adaLN and output linear."""
    actions = model.generate(make_cond(batch=3), num_samples=2)
    assert torch.all(actions == 0)


def test_every_block_is_identity_at_init(model: DriftingPolicy) -> None:
    hidden = model.config.hidden_size
    x, c = torch.randn(6, 16, hidden), torch.randn(6, hidden)
    context = Context(
        tokens=torch.randn(3, 7, hidden),
        attn_mask=torch.ones(3, 1, 1, 7, dtype=torch.bool),
        valid=torch.ones(3, dtype=torch.bool),
    )
    rope = (model.rope_cos, model.rope_sin)
    for block in model.blocks:
        assert torch.equal(block(x, c, context, rope), x)


def test_zero_init_still_learns_noise_dependence(model: DriftingPolicy) -> None:
    """A few steps break the initial collapse: outputs then depend on the noise draw."""
    cond = make_cond(batch=2)
    target = torch.randn(2, 16, 128) * cond["action_mask"][:, None]
    optimizer = model.configure_optimizers(weight_decay=0.0, lr=1e-3, betas=(0.9, 0.95))
    model.train()
    for _ in range(3):
        loss = ((model.generate(cond, num_samples=2) - target[:, None]) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        samples = model.eval().generate(cond, num_samples=2)
    assert (samples[:, 0] - samples[:, 1]).abs().max() > 1e-4


def test_masked_out_tokens_do_not_change_the_output(trained_like: DriftingPolicy) -> None:
    cond = make_cond(batch=3)  # observation 0 has its second half masked out
    noise = trained_like.draw_noise(3, torch.device("cpu"))
    before = trained_like(noise, **cond)
    changed = dict(cond, vlm_tokens=cond["vlm_tokens"].clone())
    changed["vlm_tokens"][~cond["vlm_mask"]] = 100.0 * torch.randn(
        int((~cond["vlm_mask"]).sum()), 48
    )
    torch.testing.assert_close(trained_like(noise, **changed), before, atol=1e-6, rtol=0)
    changed["vlm_tokens"][0, 0] += 1.0  # a real token does matter
    assert not torch.allclose(trained_like(noise, **changed)[0], before[0])


def test_view_positions_count_tokens_per_camera_and_frame() -> None:
    camera = torch.tensor([[0, 0, 1, 0, LANGUAGE_TOKEN, 1, LANGUAGE_TOKEN]])
    frame = torch.tensor([[0, 0, 0, 1, 0, 0, 0]])
    positions = view_positions(camera, frame, num_frames=4, num_groups=20)
    assert positions.tolist() == [[0, 1, 0, 0, 0, 1, 1]]


def test_where_a_feature_sits_in_the_view_changes_the_action(trained_like: DriftingPolicy) -> None:
    """Swapping two cells of one camera's feature map (a cube seen elsewhere) must matter."""
    cond = make_cond(batch=3, tokens=12)
    noise = trained_like.draw_noise(3, torch.device("cpu"))
    before = trained_like(noise, **cond)
    same_view = (cond["token_camera"][1] == 0) & (cond["token_frame"][1] == 0)
    cells = same_view.nonzero().flatten()[:2]  # two tokens of camera 0 in frame 0
    swapped = dict(cond, vlm_tokens=cond["vlm_tokens"].clone())
    swapped["vlm_tokens"][:, cells] = cond["vlm_tokens"][:, cells.flip(0)]
    assert (trained_like(noise, **swapped)[1] - before[1]).abs().max() > 1e-4


def test_all_masked_sample_gives_finite_output(trained_like: DriftingPolicy) -> None:
    cond = make_cond(batch=3)
    cond["vlm_mask"][1] = False
    noise = trained_like.draw_noise(3, torch.device("cpu"))
    actions = trained_like(noise, **cond)
    assert torch.isfinite(actions).all()
    alone = trained_like(noise[2:], **{k: v[2:] for k, v in cond.items()})
    torch.testing.assert_close(actions[2:], alone, atol=1e-5, rtol=1e-5)  # others unaffected


def test_rope_scores_depend_on_relative_position_only() -> None:
    torch.manual_seed(0)
    q, k = torch.randn(32), torch.randn(32)
    cos, sin = rope_angles(torch.arange(64), 32)

    def score(m: int, n: int) -> torch.Tensor:
        return apply_rope(q, cos[m], sin[m]) @ apply_rope(k, cos[n], sin[n])

    torch.testing.assert_close(score(3, 1), score(40, 38))
    torch.testing.assert_close(score(0, 5), score(20, 25))
    assert not torch.allclose(score(3, 1), score(3, 2))  # the offset itself matters
    torch.testing.assert_close(apply_rope(q, cos[0], sin[0]), q)  # position 0 is no rotation


def test_configure_optimizers_puts_each_parameter_in_one_group(model: DriftingPolicy) -> None:
    optimizer = model.configure_optimizers(weight_decay=0.1, lr=1e-3, betas=(0.9, 0.95))
    decay, no_decay = optimizer.param_groups
    ids = [id(p) for group in optimizer.param_groups for p in group["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (0.1, 0.0)
    decayed = {id(p) for p in decay["params"]}
    assert id(model.blocks[0].attn.qkv.weight) in decayed
    for param in (
        model.embodiment_embed.weight,
        model.context_embedder.camera_embed.weight,
        model.noise_tokenizer.pos_embed,
        model.blocks[0].attn.q_norm.weight,
        model.blocks[0].attn.qkv.bias,
    ):
        assert id(param) not in decayed


def test_parameter_counts_of_the_sizes() -> None:
    counts = {}
    for size in ("tiny", "B"):
        with torch.device("meta"):  # counts without allocating
            counts[size] = DriftingPolicy(policy_config(size)).num_parameters()
    assert 1e6 <= counts["tiny"] <= 3e6
    assert 100e6 <= counts["B"] <= 150e6


def test_bad_inputs_raise_clear_errors(model: DriftingPolicy) -> None:
    cond = make_cond(batch=2)
    noise = model.draw_noise(2, torch.device("cpu"))
    with pytest.raises(ValueError, match="noise has shape"):
        model(noise[:, :8], **cond)
    with pytest.raises(ValueError, match="embodiment_id"):
        model(noise, **dict(cond, embodiment_id=torch.tensor([0, 7])))
    with pytest.raises(ValueError, match="token_camera"):
        model(noise, **dict(cond, token_camera=torch.full_like(cond["token_camera"], 9)))
    with pytest.raises(ValueError, match="takes no timestep"):
        model(noise, **cond, timestep=torch.zeros(2))
    with pytest.raises(ValueError, match="not a multiple"):
        model(model.draw_noise(3, torch.device("cpu")), **cond)
    with pytest.raises(ValueError, match="missing keys \\['pooled'\\]"):
        model.generate({k: v for k, v in cond.items() if k != "pooled"}, num_samples=2)


def test_tiny_policy_overfits_four_pairs_with_mse() -> None:
    torch.manual_seed(0)
    model = build_policy("tiny", vlm_hidden_size=VLM_HIDDEN)
    cond = make_cond(batch=4, seed=1)
    target = torch.randn(4, 16, 128) * cond["action_mask"][:, None]
    optimizer = model.configure_optimizers(weight_decay=0.0, lr=1e-3, betas=(0.9, 0.95))

    def masked_mse() -> torch.Tensor:
        actions = model.generate(cond, num_samples=1)[:, 0]
        return ((actions - target) ** 2).sum() / (cond["action_mask"].sum() * 16)

    first = masked_mse().item()
    for _ in range(200):
        loss = masked_mse()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert masked_mse().item() < first / 100
