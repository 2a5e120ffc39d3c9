"""Diffusion constants against their formulas and the reference's recorded values."""

import math

import pytest

from ditto_core.diffusion import alphas_cumprod, cosine_betas, ddim_time_pairs


def test_cosine_betas_follow_the_formula():
    betas = cosine_betas()
    assert betas.shape == (1000,)

    def f(k):
        return math.cos((k / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2

    for k in (0, 1, 17, 500, 998, 999):
        expected = min(max(1 - f(k + 1) / f(k), 0.0), 0.999)
        assert betas[k].item() == pytest.approx(expected, rel=1e-6)
    assert betas[0].item() == pytest.approx(4.128e-5, rel=1e-3)
    assert betas[999].item() == pytest.approx(0.999, rel=1e-6)


def test_alphas_cumprod_values():
    acp = alphas_cumprod()
    assert acp[19].item() == pytest.approx(0.998252, rel=1e-5)
    assert acp[979].item() == pytest.approx(9.712e-4, rel=1e-3)
    assert acp[999].item() == pytest.approx(2.43e-9, rel=1e-2)
    assert bool((acp[1:] < acp[:-1]).all())


@pytest.mark.parametrize(
    "steps, head, tail",
    [
        (50, [(999, 979), (979, 959)], [(39, 19), (19, -1)]),
        (25, [(999, 959)], [(39, -1)]),
        (10, [(999, 899)], [(99, -1)]),
        (30, [(999, 965), (965, 932), (932, 899)], [(32, -1)]),
    ],
)
def test_ddim_time_pairs(steps, head, tail):
    pairs = ddim_time_pairs(steps)
    assert len(pairs) == steps
    assert pairs[: len(head)] == head
    assert pairs[-len(tail) :] == tail
    assert all(a > b for a, b in pairs)
    assert all(pairs[i][1] == pairs[i + 1][0] for i in range(steps - 1))


@pytest.mark.parametrize("steps", [0, 1001, 100_000_000])
def test_ddim_time_pairs_rejects_steps_out_of_range(steps):
    with pytest.raises(ValueError, match="sampling steps must be between 1 and 1000"):
        ddim_time_pairs(steps)


@pytest.mark.parametrize("options, message", [
    ({"steps": 100_000_000}, "sampling steps must be a whole number from 1 to 1000"),
    ({"steps": 0}, "sampling steps must be a whole number from 1 to 1000"),
    ({"seed": 10**23}, r"the seed must be a whole number from 0 to 2\*\*63 - 1"),
    ({"seed": -1}, r"the seed must be a whole number from 0 to 2\*\*63 - 1"),
])
def test_sampler_options_out_of_range_are_refused_before_any_work(options, message):
    from ditto_core.motion import SamplerOptions

    with pytest.raises(ValueError, match=message):
        SamplerOptions(**options)
