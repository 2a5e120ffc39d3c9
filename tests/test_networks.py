"""Every network loads from a fake release through the real loader and computes what its parts say."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ditto_core.models import NETWORKS, load_network
from ditto_core.models.blocks import SpectralNormConv2d
from ditto_core.models.examples import example_inputs
from ditto_core.models.lmdm import Attention, RotaryEmbedding
from ditto_core.models.motion_extractor import GlobalResponseNorm, LayerNorm2d
from ditto_core.release import NETWORK_FILES

# Independent figures for the official architecture (from the reference modules' state dicts and LivePortrait's
# published parameter table): number of state-dict entries and parameters.
OFFICIAL_LAYOUT = {
    "appearance_extractor": (107, 836_000),
    "motion_extractor": (212, 28_119_000),
    "warp_network": (97, 45_530_000),
    "decoder": (182, 55_365_000),
    "stitch_network": (8, 45_249),  # 126·128+128 + 128·128+128 + 128·64+64 + 64·65+65
    "lmdm": (249, 47_788_297),
}

OFFICIAL_OUTPUTS = {
    "appearance_extractor": [(1, 32, 16, 64, 64)],
    "motion_extractor": [(1, 66), (1, 66), (1, 66), (1, 3), (1, 63), (1, 1), (1, 63)],
    "warp_network": [(1, 256, 64, 64)],
    "decoder": [(1, 3, 512, 512)],
    "stitch_network": [(1, 21, 3)],
    "lmdm": [(1, 80, 265), (1, 80, 265)],
}


def _as_tuple(output):
    return output if isinstance(output, tuple) else (output,)


def _file(root, kind):
    return root / NETWORK_FILES[kind].path


@pytest.mark.parametrize("kind", list(NETWORKS))
def test_official_size_layout_and_outputs(official_release, kind):
    net = load_network(kind, _file(official_release, kind))
    assert not net.training
    entries, params = OFFICIAL_LAYOUT[kind]
    inner = net.model if kind == "lmdm" else net
    assert len(inner.state_dict()) == entries
    count = sum(p.numel() for p in net.parameters())
    if kind in ("stitch_network", "lmdm"):
        assert count == params
    else:
        assert abs(count - params) < 500  # the published table rounds to thousands
    with torch.inference_mode():
        outputs = _as_tuple(net(*example_inputs(kind, net)))
    assert [tuple(o.shape) for o in outputs] == OFFICIAL_OUTPUTS[kind]
    for o in outputs:
        assert o.dtype == torch.float32
        assert torch.isfinite(o).all()


@pytest.mark.parametrize("kind", list(NETWORKS))
def test_small_release_batches_are_independent(small_release, kind):
    """Sizes are read from the tensors; a batch of two equals two single runs."""
    net = load_network(kind, _file(small_release, kind))
    first, second = example_inputs(kind, net, image_size=64, seed=1), example_inputs(kind, net, image_size=64, seed=2)
    batched = tuple(torch.cat([a, b]) for a, b in zip(first, second))
    with torch.inference_mode():
        out_batched = _as_tuple(net(*batched))
        out_single = [_as_tuple(net(*first)), _as_tuple(net(*second))]
    for i, o in enumerate(out_batched):
        torch.testing.assert_close(o, torch.cat([out_single[0][i], out_single[1][i]]), rtol=1e-4, atol=1e-5)


def test_decoder_output_is_an_image(small_release):
    net = load_network("decoder", _file(small_release, "decoder"))
    (feature,) = example_inputs("decoder", net, image_size=64)
    with torch.inference_mode():
        image = net(feature)
    assert image.shape == (1, 3, 128, 128)  # 16² features → ×2 ×2 upsampling → ×2 pixel shuffle
    assert 0 < image.min() and image.max() < 1


def test_stitching_equals_its_mlp_written_out(official_release):
    path = _file(official_release, "stitch_network")
    net = load_network("stitch_network", path)
    raw = torch.load(path, weights_only=True)["retarget_shoulder"]
    sd = {k.removeprefix("module."): v for k, v in raw.items()}
    kp_s, kp_d = torch.randn(2, 21, 3), torch.randn(2, 21, 3)
    h = torch.cat([kp_s.flatten(1), kp_d.flatten(1)], 1)
    for i in (0, 2, 4):
        h = torch.relu(h @ sd[f"mlp.{i}.weight"].T + sd[f"mlp.{i}.bias"])
    delta = h @ sd["mlp.6.weight"].T + sd["mlp.6.bias"]
    expected = kp_d + delta[:, :63].view(2, 21, 3)
    expected[..., 0] += delta[:, 63:64]
    expected[..., 1] += delta[:, 64:65]
    torch.testing.assert_close(net(kp_s, kp_d), expected)


def test_spectral_norm_conv_matches_torch_spectral_norm():
    torch.manual_seed(0)
    ref = nn.utils.spectral_norm(nn.Conv2d(6, 5, 3, padding=1))
    ref.train()
    ref(torch.randn(1, 6, 8, 8))  # one power iteration so u, v are not their initial values
    ref.eval()
    ours = SpectralNormConv2d(6, 5, 3)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(2, 6, 8, 8)
    torch.testing.assert_close(ours(x), ref(x))


def test_attention_matches_torch_multihead_attention():
    torch.manual_seed(0)
    ref = nn.MultiheadAttention(32, 8, batch_first=True).eval()
    ours = Attention(32, 8)
    ours.load_state_dict(ref.state_dict())
    q, k, v = torch.randn(2, 7, 32), torch.randn(2, 9, 32), torch.randn(2, 9, 32)
    torch.testing.assert_close(ours(q, k, v), ref(q, k, v, need_weights=False)[0], rtol=1e-5, atol=1e-6)


def test_rotary_embedding_is_a_complex_rotation():
    rotary = RotaryEmbedding(8)
    x = torch.randn(1, 5, 8)
    pairs = torch.view_as_complex(x.view(1, 5, 4, 2).contiguous())
    theta = 10000 ** (-torch.arange(0, 8, 2).float() / 8)
    angles = torch.arange(5).float()[:, None] * theta[None]
    expected = torch.view_as_real(pairs * torch.polar(torch.ones_like(angles), angles)).view(1, 5, 8)
    torch.testing.assert_close(rotary(x), expected)


def test_layer_norm_2d_and_grn_formulas():
    x = torch.randn(2, 6, 4, 5)
    ln = LayerNorm2d(6)
    nn.init.normal_(ln.weight)
    nn.init.normal_(ln.bias)
    expected = F.layer_norm(x.permute(0, 2, 3, 1), (6,), ln.weight, ln.bias, eps=1e-6).permute(0, 3, 1, 2)
    torch.testing.assert_close(ln(x), expected, rtol=1e-5, atol=1e-5)

    grn = GlobalResponseNorm(6)
    nn.init.normal_(grn.gamma)
    nn.init.normal_(grn.beta)
    y = x.permute(0, 2, 3, 1)
    g = y.pow(2).sum(dim=(1, 2), keepdim=True).sqrt()
    expected = grn.gamma * y * (g / (g.mean(-1, keepdim=True) + 1e-6)) + grn.beta + y
    torch.testing.assert_close(grn(y), expected)


def test_warp_with_identical_keypoints_samples_the_identity_grid(small_release):
    """kp_driving = kp_source makes every sparse motion the identity grid, whatever the mask."""
    net = load_network("warp_network", _file(small_release, "warp_network"))
    feature, kp, _ = example_inputs("warp_network", net, image_size=64)
    deformation, _ = net.dense_motion_network(feature, kp, kp)
    d, h, w = feature.shape[2:]
    z, y, x = torch.meshgrid(*(torch.linspace(-1, 1, n) for n in (d, h, w)), indexing="ij")
    torch.testing.assert_close(deformation[0], torch.stack([x, y, z], -1), rtol=1e-5, atol=1e-5)
