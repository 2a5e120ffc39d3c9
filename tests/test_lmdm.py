"""The LMDM's guided step, condition handling and width inference."""

import torch

from ditto_core.diffusion import alphas_cumprod
from ditto_core.models import load_network
from ditto_core.models.examples import example_inputs
from ditto_core.models.lmdm import LMDMConfig, MotionDenoiser
from ditto_core.motion.sampler import WindowSampler
from ditto_core.release import NETWORK_FILES
from ditto_core.testing.fake_release import randomize


def _lmdm(root):
    return load_network("lmdm", root / NETWORK_FILES["lmdm"].path)


def test_guided_step_formulas(small_release):
    net = _lmdm(small_release)
    x, cond_frame, cond, _ = example_inputs("lmdm", net)
    t = torch.tensor([321])
    with torch.inference_mode():
        pred_noise, x_start = net(x, cond_frame, cond, t)
        u = net.model(x, cond_frame, cond, t, conditioned=False)
        c = net.model(x, cond_frame, cond, t, conditioned=True)
    torch.testing.assert_close(x_start, u + 2 * (c - u))
    a = alphas_cumprod()[321]
    torch.testing.assert_close(pred_noise, (x - a.sqrt() * x_start) / (1 - a).sqrt(), rtol=1e-4, atol=1e-4)


def test_batched_guidance_computes_both_branches_in_one_call(small_release):
    """The fast path (one decoder call of batch 2B) gives the two-call step up to float rounding, also over a
    whole sampled window; the default stays the bit-exact two-call path."""
    net = _lmdm(small_release)
    assert not net.batched_guidance
    x, cond_frame, cond, _ = example_inputs("lmdm", net)
    x, cond_frame, cond = x.repeat(2, 1, 1), cond_frame.repeat(2, 1), cond.repeat(2, 1, 1)
    t = torch.tensor([321, 40])
    with torch.inference_mode():
        separate = net(x, cond_frame, cond, t)
        window = WindowSampler(net, 5, seed=0)(cond_frame[0], cond[0])
        net.batched_guidance = True
        batched = net(x, cond_frame, cond, t)
        batched_window = WindowSampler(net, 5, seed=0)(cond_frame[0], cond[0])
    # a batch of 2B takes other matmul kernels than two of B: equal up to float rounding of the outputs' scale
    for a, b in zip(batched, separate):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(batched_window, window, rtol=1e-4, atol=1e-4)


def test_unconditional_branch_ignores_conditions_but_not_the_condition_frame(small_release):
    net = _lmdm(small_release)
    x, cond_frame, cond, t = example_inputs("lmdm", net)
    with torch.inference_mode():
        base = net.model(x, cond_frame, cond, t, conditioned=False)
        other_cond = net.model(x, cond_frame, torch.randn_like(cond), t, conditioned=False)
        other_frame = net.model(x, cond_frame + 1, cond, t, conditioned=False)
        conditional = net.model(x, cond_frame, cond, t, conditioned=True)
        conditional_other = net.model(x, cond_frame, torch.randn_like(cond), t, conditioned=True)
    torch.testing.assert_close(base, other_cond)
    assert (base - other_frame).abs().max() > 1e-3
    assert (conditional - conditional_other).abs().max() > 1e-3


def test_timestep_changes_prediction(small_release):
    net = _lmdm(small_release)
    x, cond_frame, cond, _ = example_inputs("lmdm", net)
    with torch.inference_mode():
        early = net(x, cond_frame, cond, torch.tensor([999]))[1]
        late = net(x, cond_frame, cond, torch.tensor([0]))[1]
    assert (early - late).abs().max() > 1e-3


def test_condition_width_is_read_from_the_file(tmp_path):
    """Files with the 1103-wide (v0.4) and the stale 1059-wide condition both load, at their own width."""
    for width in (1103, 1059):
        torch.manual_seed(width)
        model = MotionDenoiser(LMDMConfig(cond_dim=width, latent_dim=64, ff_dim=128, num_layers=1))
        path = tmp_path / f"lmdm_{width}.pth"
        torch.save({"model_state_dict": randomize(model, torch.Generator().manual_seed(0))}, path)
        net = load_network("lmdm", path)
        assert net.config.cond_dim == width
        assert net.config.num_layers == 1
        x, cond_frame, cond, t = example_inputs("lmdm", net)
        assert cond.shape[-1] == width
        assert net(x, cond_frame, cond, t)[1].shape == (1, 80, 265)
