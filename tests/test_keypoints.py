"""Pose bins, rotations and the keypoint transform against hand-computed values."""

import math

import pytest
import torch

from ditto_core.keypoints import bins_to_degrees, rotation_matrix, transform_keypoints


@pytest.mark.parametrize("bin_index", [0, 20, 32, 33, 65])
def test_peaked_logits_give_the_bin_centre(bin_index):
    logits = torch.full((1, 66), -1e4)
    logits[0, bin_index] = 0
    assert bins_to_degrees(logits).item() == pytest.approx(3 * bin_index - 97.5)


def test_uniform_logits_give_zero_degrees():
    assert bins_to_degrees(torch.zeros(3, 66)).abs().max().item() < 1e-5


def test_two_equal_bins_average():
    logits = torch.full((66,), -1e4)
    logits[[10, 12]] = 5
    assert bins_to_degrees(logits).item() == pytest.approx(3 * 11 - 97.5)


def test_rotation_matrix_is_a_rotation():
    angles = torch.tensor([[10.0, -35.0, 70.0], [0.0, 0.0, 0.0], [-80.0, 15.0, -5.0]])
    r = rotation_matrix(angles[:, 0], angles[:, 1], angles[:, 2])
    torch.testing.assert_close(r @ r.transpose(1, 2), torch.eye(3).expand(3, 3, 3), atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.linalg.det(r), torch.ones(3))
    torch.testing.assert_close(r[1], torch.eye(3))


def test_rotation_axes_by_hand():
    row_x = torch.tensor([[1.0, 0.0, 0.0]])
    row_y = torch.tensor([[0.0, 1.0, 0.0]])
    zero, ninety = torch.zeros(1), torch.full((1,), 90.0)
    # yaw +90°: R_y maps x to −z; right-multiplying the row vector by R_yᵀ does the same
    torch.testing.assert_close(row_x @ rotation_matrix(zero, ninety, zero)[0], torch.tensor([[0.0, 0.0, -1.0]]), atol=1e-6, rtol=0)
    # pitch +90°: R_x maps y to z
    torch.testing.assert_close(row_y @ rotation_matrix(ninety, zero, zero)[0], torch.tensor([[0.0, 0.0, 1.0]]), atol=1e-6, rtol=0)
    # roll +90°: R_z maps x to y
    torch.testing.assert_close(row_x @ rotation_matrix(zero, zero, ninety)[0], torch.tensor([[0.0, 1.0, 0.0]]), atol=1e-6, rtol=0)


def test_rotation_order_is_roll_yaw_pitch():
    p, y, r = torch.tensor([20.0]), torch.tensor([30.0]), torch.tensor([40.0])

    def axis_rotation(axis, degrees):
        c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
        i, j = [(1, 2), (2, 0), (0, 1)][axis]
        m = torch.eye(3)
        m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
        return m

    expected = (axis_rotation(2, 40) @ axis_rotation(1, 30) @ axis_rotation(0, 20)).T
    torch.testing.assert_close(rotation_matrix(p, y, r)[0], expected, atol=1e-6, rtol=0)


def test_transform_keypoints_by_hand():
    kp = torch.arange(63, dtype=torch.float32).view(1, 63) / 63
    exp = torch.full((1, 63), 0.01)
    t = torch.tensor([[0.1, -0.2, 5.0]])
    scale = torch.tensor([[2.0]])
    zero = torch.zeros(1)
    out = transform_keypoints(kp, zero, zero, zero, t, exp, scale)
    expected = 2 * (kp.view(1, 21, 3) + 0.01) + torch.tensor([0.1, -0.2, 0.0])  # t_z ignored
    torch.testing.assert_close(out, expected)

    ninety = torch.full((1,), 90.0)
    rolled = transform_keypoints(kp, zero, zero, ninety, torch.zeros(1, 3), torch.zeros(1, 63), torch.ones(1, 1))
    x, y, z = kp.view(21, 3).unbind(-1)
    torch.testing.assert_close(rolled[0], torch.stack([-y, x, z], -1), atol=1e-6, rtol=0)
