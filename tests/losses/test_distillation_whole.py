"""DINO's centre update by hand: one teacher crop or two, a Tensor centre or an array."""
import numpy as np
import pytest

from npjem import Tensor
from npjem.losses import dino_center_update


def test_centre_of_one_teacher_crop_is_its_batch_mean_at_momentum_zero():
    t = np.array([[1.0, 4.0], [3.0, 0.0]])
    new = dino_center_update(np.zeros(2), [t], momentum=0.0)
    np.testing.assert_allclose(new, [2.0, 2.0], atol=0)


@pytest.mark.parametrize("shape", [(2,), (1, 2)])
def test_centre_update_keeps_the_centres_kind_and_shape(shape):
    # Two crops: the mean runs over all four rows, (2, 1); m = 0.75: 0.75·c + 0.25·(2, 1).
    crops = [np.array([[1.0, 0.0], [3.0, 2.0]]), np.array([[2.0, 1.0], [2.0, 1.0]])]
    c = np.array([4.0, -4.0]).reshape(shape)
    expected = (0.75 * np.array([4.0, -4.0]) + 0.25 * np.array([2.0, 1.0])).reshape(shape)
    as_array = dino_center_update(c, crops, momentum=0.75)
    assert type(as_array) is np.ndarray and as_array.shape == shape
    np.testing.assert_allclose(as_array, expected, atol=1e-15)
    as_tensor = dino_center_update(Tensor(c), crops, momentum=0.75)
    assert isinstance(as_tensor, Tensor) and as_tensor.shape == shape and not as_tensor.requires_grad
    np.testing.assert_allclose(as_tensor.data, expected, atol=1e-15)


def test_data2vec_layer_norms_use_the_eps_given():
    from npjem.losses import data2vec_targets

    # One position of channels (1, −1): mean 0, biased variance 1, so norm = a / sqrt(1 + eps).
    a = np.array([[[1.0, -1.0], [3.0, 1.0]]])  # (B=1, T=2, C=2); the second row is the first + 2
    for kw in ({"layer_norm": True}, {"layer_norm_targets": True}):
        y = data2vec_targets([a], top_k=1, instance_norm=False, eps=3.0, **kw)
        np.testing.assert_allclose(y.data, [[[0.5, -0.5], [0.5, -0.5]]], atol=1e-15)


def test_data2vec_refuses_top_k_layers_of_other_shapes():
    from npjem.losses import data2vec_targets

    a, b = np.ones((2, 3, 4)), np.ones((1, 3, 4))  # b would broadcast against a
    with pytest.raises(ValueError, match=r"^layer_outputs\[2\] must have shape \(2, 3, 4\)"):
        data2vec_targets([b, a, b], top_k=2, instance_norm=False)


def test_byol_takes_two_pairs_of_directions_or_one_direction_only():
    from npjem.losses import byol_loss

    rng = np.random.default_rng(0)
    v = [rng.standard_normal((3, 4)) for _ in range(3)]
    for p, z in ((v, v[:2]), (v[:2], v), (v, v), (v[:2], v[0]), (v[0], v[:2])):
        with pytest.raises(ValueError, match="^p and z must both be Tensors"):
            byol_loss(p, z)
    # The two directions of a pair: ‖u(p₁) − u(z₂)‖² + ‖u(p₂) − u(z₁)‖², each a mean over rows.
    both = float(byol_loss(v[:2], v[:2]).data)
    one = float(byol_loss(v[0], v[1]).data) + float(byol_loss(v[1], v[0]).data)
    assert both == pytest.approx(one, rel=1e-12)


def test_byol_pairs_of_other_batch_sizes_are_refused_even_where_they_broadcast():
    from npjem.losses import byol_loss

    rng = np.random.default_rng(1)
    big, one = rng.standard_normal((3, 4)), rng.standard_normal((1, 4))
    # p₁ ~ z₂ are (3, 4), p₂ ~ z₁ are (1, 4): each direction is consistent, the pair is not.
    with pytest.raises(ValueError, match=r"^p\[1\] must have shape \(3, 4\)"):
        byol_loss([big, one], [one, big])


def test_data2vec_loss_of_one_position_is_its_channel_sum_over_sqrt_c():
    from npjem.losses import data2vec_loss

    # A (C,) prediction is one position; its mask is a 0-d boolean. MSE: Σ_c d² / sqrt(C).
    x, y = np.array([1.0, 2.0, 3.0, 4.0]), np.zeros(4)
    got = data2vec_loss(x, y, np.array(True), loss="mse")
    assert float(got.data) == pytest.approx(30.0 / 2.0, rel=1e-15)
    with pytest.raises(ValueError, match="^prediction must have a channel axis"):
        data2vec_loss(np.array(1.0), np.array(0.0), np.array(True), loss="mse")


def test_data2vec_loss_takes_the_mask_as_a_tensor_too():
    from npjem.losses import data2vec_loss

    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 3, 4))
    mask = np.array([[True, False, True], [False, False, True]])
    a = float(data2vec_loss(x, y, mask).data)
    b = float(data2vec_loss(x, y, Tensor(mask)).data)
    assert a == b and a > 0


def test_data2vec_loss_of_float32_stays_float32():
    from npjem.losses import data2vec_loss

    x = np.ones((2, 3, 4), np.float32)
    mask = np.array([[True, False, True], [False, False, True]])
    out = data2vec_loss(x, np.zeros_like(x), mask, loss="mse")
    assert out.dtype == np.float32
    # three masked positions, each Σ_c 1² = 4, times 1/sqrt(4): mean 2
    assert float(out.data) == 2.0


def test_dino_with_one_teacher_crop_by_hand():
    from npjem.losses import dino

    # One teacher crop, two student crops: the only pair is (teacher 0, student 1), n = 1.
    # Teacher: ((2 log 3, 0) − (log 3, 0)) / 0.5 = (2 log 3, 0) → P_t = (9/10, 1/10).
    # Student 1: (0, 2 log 3) / 2 = (0, log 3) → log P_s = (log 1/4, log 3/4).
    l3 = np.log(3.0)
    teacher = [np.array([[2 * l3, 0.0]])]
    student = [np.array([[5.0, -5.0]]), np.array([[0.0, 2 * l3]])]
    got = dino(student, teacher, np.array([l3, 0.0]), student_temp=2.0, teacher_temp=0.5)
    expected = -(0.9 * np.log(0.25) + 0.1 * np.log(0.75))
    assert float(got.data) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="at least one pair of different crops"):
        dino(student[:1], teacher, np.zeros(2))
