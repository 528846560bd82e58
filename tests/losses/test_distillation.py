"""Tests of npjem.losses.distillation: SimSiam, BYOL, DINO and Data2Vec."""
import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import npjem
from npjem import Tensor, backend
from npjem.losses import (
    byol_loss,
    data2vec_loss,
    data2vec_targets,
    dino,
    dino_center_update,
    negative_cosine,
    simsiam_loss,
)

GC = dict(eps=1e-6, atol=1e-6, rtol=1e-4)
seeds = st.integers(0, 2**32 - 1)
batch = st.integers(1, 5)
dims = st.integers(1, 5)


def host(a):
    return backend.to_numpy(a.data if isinstance(a, Tensor) else a)


def randn(rng, *shape):
    return rng.standard_normal(shape)


def leaves(xp, *arrays):
    return [Tensor(xp.asarray(a), requires_grad=True) for a in arrays]


def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


# ================================================================ gradients (float64, targets fixed)

@given(b=batch, d=dims, seed=seeds)
def test_negative_cosine_and_simsiam_gradcheck(b, d, seed):
    rng = np.random.default_rng(seed)
    p1, p2, z1, z2 = (randn(rng, b, d) for _ in range(4))
    assert npjem.gradcheck(negative_cosine, [p1, z1], fixed=(1,), **GC)
    assert npjem.gradcheck(simsiam_loss, [p1, p2, z1, z2], fixed=(2, 3), **GC)


@given(b=batch, d=dims, seed=seeds, directions=st.sampled_from(["sum", "mean"]))
def test_byol_gradcheck(b, d, seed, directions):
    rng = np.random.default_rng(seed)
    p1, p2, z1, z2 = (randn(rng, b, d) for _ in range(4))
    assert npjem.gradcheck(byol_loss, [p1, z1], fixed=(1,), **GC)

    def both(a, c, y1, y2):
        return byol_loss((a, c), (y1, y2), directions=directions)

    assert npjem.gradcheck(both, [p1, p2, z1, z2], fixed=(2, 3), **GC)


@given(b=batch, k=st.integers(2, 5), n_student=st.integers(2, 4), seed=seeds, tau_s=st.floats(0.05, 1.0),
       tau_t=st.floats(0.02, 1.0), data=st.data())
def test_dino_gradcheck_with_teacher_and_centre_fixed(b, k, n_student, seed, tau_s, tau_t, data):
    n_teacher = data.draw(st.integers(1, min(2, n_student)))
    rng = np.random.default_rng(seed)
    s = [randn(rng, b, k) for _ in range(n_student)]
    t = [randn(rng, b, k) for _ in range(n_teacher)]
    c = 0.1 * randn(rng, k)

    def fn(*args):
        return dino(list(args[:n_student]), list(args[n_student:-1]), args[-1], tau_s, tau_t)

    fixed = tuple(range(n_student, n_student + n_teacher + 1))
    assert npjem.gradcheck(fn, s + t + [c], fixed=fixed, **GC)


@given(b=st.integers(1, 3), t=st.integers(1, 4), c=dims, seed=seeds, loss=st.sampled_from(["mse", "smooth_l1"]),
       beta=st.floats(0.3, 3.0), reduction=st.sampled_from(["mean", "sum"]))
def test_data2vec_loss_gradcheck(b, t, c, seed, loss, beta, reduction):
    rng = np.random.default_rng(seed)
    x, y = randn(rng, b, t, c), randn(rng, b, t, c)
    mask = rng.random((b, t)) < 0.6
    assume(mask.any())
    assume(np.all(np.abs(np.abs(x - y) - beta) > 1e-3))  # the smooth L1's switch at |d| = β
    def fn(a, target):
        return data2vec_loss(a, target, mask, loss=loss, beta=beta, reduction=reduction)

    assert npjem.gradcheck(fn, [x, y], fixed=(1,), **GC)


# ================================================================ SimSiam and BYOL

@given(b=batch, d=st.integers(2, 5), seed=seeds)
def test_cosine_losses_values_and_scale_invariance(b, d, seed):
    rng = np.random.default_rng(seed)
    p1, p2, z1, z2 = (randn(rng, b, d) for _ in range(4))

    def cos(a, c):
        return (a * c).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(c, axis=1)

    np.testing.assert_allclose(negative_cosine(p1, z2).item(), -cos(p1, z2).mean(), rtol=1e-12)
    np.testing.assert_allclose(simsiam_loss(p1, p2, z1, z2).item(),
                               -0.5 * cos(p1, z2).mean() - 0.5 * cos(p2, z1).mean(), rtol=1e-12)
    # 2 − 2cos is the squared distance of the unit vectors
    u = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    np.testing.assert_allclose(byol_loss(p1, z1).item(), ((u(p1) - u(z1)) ** 2).sum(1).mean(), rtol=1e-10)
    total = byol_loss((p1, p2), (z1, z2))
    np.testing.assert_allclose(total.item(), (2 - 2 * cos(p1, z2) + 2 - 2 * cos(p2, z1)).mean(), rtol=1e-12)
    np.testing.assert_allclose(byol_loss((p1, p2), (z1, z2), directions="mean").item(), total.item() / 2, rtol=1e-12)
    # lightly's example 0.5·(ncs(p0, z1) + ncs(p1, z0)) is (original − 4) / 4
    lightly = 0.5 * (negative_cosine(p1, z2).item() + negative_cosine(p2, z1).item())
    np.testing.assert_allclose((total.item() - 4) / 4, lightly, rtol=1e-10, atol=1e-14)
    a, c = rng.uniform(0.1, 10, (b, 1)), rng.uniform(0.1, 10, (b, 1))
    np.testing.assert_allclose(negative_cosine(a * p1, c * z1).item(), negative_cosine(p1, z1).item(), rtol=1e-12)
    np.testing.assert_allclose(byol_loss(a * p1, c * z1).item(), byol_loss(p1, z1).item(), rtol=1e-10, atol=1e-14)


def test_no_gradient_reaches_the_targets(xp):
    rng = np.random.default_rng(0)
    p1, p2, z1, z2 = leaves(xp, *(randn(rng, 4, 3) for _ in range(4)))
    simsiam_loss(p1, p2, z1, z2).backward()
    assert z1.grad is None and z2.grad is None and p1.grad is not None and p2.grad is not None
    p1, p2, z1, z2 = leaves(xp, *(randn(rng, 4, 3) for _ in range(4)))
    byol_loss((p1, p2), (z1, z2)).backward()
    assert z1.grad is None and z2.grad is None and p1.grad is not None
    p, z = leaves(xp, randn(rng, 4, 3), randn(rng, 4, 3))
    negative_cosine(p, z).backward()
    assert z.grad is None
    s = leaves(xp, *(randn(rng, 4, 5) for _ in range(3)))
    t = leaves(xp, *(randn(rng, 4, 5) for _ in range(2)))
    (c,) = leaves(xp, randn(rng, 5))
    dino(s, t, c).backward()
    assert all(x.grad is None for x in t) and c.grad is None and all(x.grad is not None for x in s)
    x, y = leaves(xp, randn(rng, 2, 3, 4), randn(rng, 2, 3, 4))
    data2vec_loss(x, y, xp.asarray(np.array([[True, False, True], [False, False, True]]))).backward()
    assert y.grad is None and x.grad is not None


def test_collapse_simsiam_and_byol_sit_at_their_minimum_with_zero_gradient(xp):
    const = xp.ones((5, 4)) * xp.asarray([0.3, -1.0, 2.0, 0.5])
    p1, p2 = leaves(xp, backend.to_numpy(const), 2.5 * backend.to_numpy(const))
    z = xp.asarray(backend.to_numpy(const) * 0.7)
    loss = simsiam_loss(p1, p2, z, z)
    assert loss.item() == pytest.approx(-1.0, abs=1e-15)
    for g in npjem.grad(loss, [p1, p2]):
        assert np.abs(host(g)).max() < 1e-15
    loss = byol_loss((p1, p2), (z, z))
    assert loss.item() == pytest.approx(0.0, abs=1e-14)
    for g in npjem.grad(loss, [p1, p2]):
        assert np.abs(host(g)).max() < 1e-14


# ================================================================ DINO

@given(b=batch, k=st.integers(2, 6), seed=seeds, tau=st.floats(0.04, 1.0))
def test_dino_with_equal_logits_and_temperatures_is_the_teachers_entropy(b, k, seed, tau):
    rng = np.random.default_rng(seed)
    t = [randn(rng, b, k), randn(rng, b, k)]
    loss = dino(t, t, np.zeros(k), student_temp=tau, teacher_temp=tau)
    p = [softmax(x / tau) for x in t]
    # each teacher crop is paired with the other crop: cross-entropies, not entropies ...
    cross = np.mean([-(p[0] * np.log(p[1])).sum(1).mean(), -(p[1] * np.log(p[0])).sum(1).mean()])
    # atol: an entropy of 1e-6 (sharp logits) is only known to ~1e-16 in float64
    np.testing.assert_allclose(loss.item(), cross, rtol=1e-10, atol=1e-14)
    # ... so put the same logits in both global crops: then it is the teacher's entropy
    same = [t[0], t[0]]
    np.testing.assert_allclose(dino(same, same, np.zeros(k), tau, tau).item(),
                               -(p[0] * np.log(p[0])).sum(1).mean(), rtol=1e-10, atol=1e-14)


def test_dino_value_multicrop_by_hand(xp):
    rng = np.random.default_rng(4)
    b, k, v = 3, 5, 4
    s = [randn(rng, b, k) for _ in range(v)]
    t = [randn(rng, b, k) for _ in range(2)]
    c = 0.3 * randn(rng, k)
    q = [softmax((x - c) / 0.04) for x in t]
    logp = [np.log(softmax(x / 0.1)) for x in s]
    want = sum(-(q[i] * logp[j]).sum(1).mean() for i in range(2) for j in range(v) if j != i) / (2 * (v - 1))
    got = dino([xp.asarray(a) for a in s], [xp.asarray(a) for a in t], xp.asarray(c))
    np.testing.assert_allclose(host(got), want, rtol=1e-10)
    got = dino([xp.asarray(a) for a in s], [xp.asarray(a) for a in t], xp.asarray(c[None, :]))
    np.testing.assert_allclose(host(got), want, rtol=1e-10)


def test_dino_centring_removes_the_batch_mean(xp):
    rng = np.random.default_rng(5)
    t = [randn(rng, 6, 4) + 3.0, randn(rng, 6, 4) - 1.0]
    c0 = randn(rng, 4)
    mean = np.concatenate(t).mean(axis=0)
    c = dino_center_update(xp.asarray(c0), [xp.asarray(a) for a in t], momentum=0.0)
    np.testing.assert_allclose(host(c), mean, rtol=1e-12)
    np.testing.assert_allclose((np.concatenate(t) - host(c)).mean(axis=0), 0.0, atol=1e-14)
    c = dino_center_update(xp.asarray(c0[None]), [xp.asarray(a) for a in t])
    assert c.shape == (1, 4)
    np.testing.assert_allclose(host(c)[0], 0.9 * c0 + 0.1 * mean, rtol=1e-12)
    ct = dino_center_update(Tensor(xp.asarray(c0), requires_grad=True),
                            [Tensor(xp.asarray(a), requires_grad=True) for a in t])
    assert isinstance(ct, Tensor) and not ct.requires_grad
    # repeated updates on the same batch converge to its mean
    c = xp.asarray(c0)
    for _ in range(300):
        c = dino_center_update(c, [xp.asarray(a) for a in t])
    np.testing.assert_allclose(host(c), mean, rtol=1e-10)


def test_dino_collapse(xp):
    b, k = 4, 6
    row = np.array([0.5, -1.0, 2.0, 0.0, 0.3, 1.0])
    const = np.tile(row, (b, 1))
    t = [xp.asarray(const), xp.asarray(const)]
    c = dino_center_update(xp.zeros(k), t, momentum=0.0)       # the centre sits at the collapsed output
    s = leaves(xp, const, const, const)
    loss = dino(s, t, c)
    # the centred teacher is uniform: the loss is the cross-entropy with uniform, at least log K,
    assert loss.item() > math.log(k)
    g = host(npjem.grad(loss, [s[0]])[0])
    np.testing.assert_allclose(g, np.tile(g[0], (b, 1)), rtol=1e-12)  # the same push for every sample
    # and uniform outputs sit at log K with zero gradient
    s = leaves(xp, *(np.zeros((b, k)) for _ in range(3)))
    loss = dino(s, [xp.zeros((b, k))] * 2, xp.zeros(k))
    assert loss.item() == pytest.approx(math.log(k), rel=1e-12)
    assert all(np.abs(host(g)).max() < 1e-15 for g in npjem.grad(loss, s))


def test_dino_bad_inputs():
    s = [np.zeros((3, 4))] * 3
    with pytest.raises(ValueError, match=r"center must have shape \(4,\) or \(1, 4\)"):
        dino(s, s[:2], np.zeros(3))
    with pytest.raises(ValueError, match="teacher has 3 crops but student only 2"):
        dino(s[:2], s, np.zeros(4))
    with pytest.raises(ValueError, match="at least one pair"):
        dino(s[:1], s[:1], np.zeros(4))
    with pytest.raises(ValueError, match=r"teacher\[0\] must have shape \(3, 4\)"):
        dino(s, [np.zeros((2, 4))], np.zeros(4))
    with pytest.raises(ValueError, match="student_temp"):
        dino(s, s[:2], np.zeros(4), student_temp=0.0)
    with pytest.raises(ValueError, match="momentum"):
        dino_center_update(np.zeros(4), s, momentum=1.5)
    with pytest.raises(TypeError, match="teacher must be a list or tuple"):
        dino_center_update(np.zeros(4), s[0])


def test_cosine_losses_bad_inputs():
    a = np.ones((3, 4))
    with pytest.raises(ValueError, match=r"z must have shape \(3, 4\)"):
        negative_cosine(a, a[:2])
    with pytest.raises(ValueError, match=r"z\[1\] must have shape \(3, 4\)"):
        byol_loss((a, a), (a, a[:, :2]))
    with pytest.raises(ValueError, match="both pairs"):
        byol_loss((a, a), a)
    with pytest.raises(ValueError, match="directions"):
        byol_loss((a, a), (a, a), directions="max")
    with pytest.raises(TypeError, match="z has dtype float32"):
        simsiam_loss(a, a, a, a.astype(np.float32))


# ================================================================ Data2Vec

def test_data2vec_targets_average_the_normalised_top_k(xp):
    rng = np.random.default_rng(6)
    layers = [randn(rng, 2, 5, 3) * (i + 1) + i for i in range(4)]

    def inorm(a):
        return (a - a.mean(1, keepdims=True)) / np.sqrt(a.var(1, keepdims=True) + 1e-5)

    def lnorm(a):
        return (a - a.mean(2, keepdims=True)) / np.sqrt(a.var(2, keepdims=True) + 1e-5)

    dev = [xp.asarray(a) for a in layers]
    y = data2vec_targets(dev, top_k=2)
    assert isinstance(y, Tensor) and not y.requires_grad
    np.testing.assert_allclose(host(y), (inorm(layers[2]) + inorm(layers[3])) / 2, rtol=1e-10)
    y = data2vec_targets(dev, top_k=3, instance_norm=False, layer_norm=True)
    np.testing.assert_allclose(host(y), sum(lnorm(a) for a in layers[1:]) / 3, rtol=1e-10)
    y = data2vec_targets(dev, top_k=2, instance_norm=True, layer_norm=True, layer_norm_targets=True)
    np.testing.assert_allclose(host(y), lnorm(sum(lnorm(inorm(a)) for a in layers[2:]) / 2), rtol=1e-9)
    y = data2vec_targets(dev, top_k=4, instance_norm=False, instance_norm_targets=True)
    np.testing.assert_allclose(host(y), inorm(sum(layers) / 4), rtol=1e-9)
    # only the top K blocks count
    changed = [xp.asarray(randn(rng, 2, 5, 3))] + dev[1:]
    np.testing.assert_allclose(host(data2vec_targets(changed, 3)), host(data2vec_targets(dev, 3)), rtol=1e-12)
    # each instance-normalised layer has mean 0 and variance 1/(1 + eps/var) over the positions
    one = host(data2vec_targets(dev[-1:], 1))
    np.testing.assert_allclose(one.mean(axis=1), 0.0, atol=1e-12)


def test_data2vec_loss_values(xp):
    rng = np.random.default_rng(7)
    x, y = randn(rng, 2, 4, 9), randn(rng, 2, 4, 9)
    mask = np.array([[True, False, True, False], [False, False, True, True]])
    d = (x - y)[mask]
    mse = (d ** 2).sum() / 3 / 4  # / sqrt(C) = 3, / M = 4 masked positions
    beta = 0.7
    sl1 = np.where(np.abs(d) < beta, 0.5 * d ** 2 / beta, np.abs(d) - 0.5 * beta).sum() / 3 / 4
    X, Y, M = xp.asarray(x), xp.asarray(y), xp.asarray(mask)
    np.testing.assert_allclose(host(data2vec_loss(X, Y, M, loss="mse")), mse, rtol=1e-12)
    np.testing.assert_allclose(host(data2vec_loss(X, Y, M, beta=beta)), sl1, rtol=1e-12)
    np.testing.assert_allclose(host(data2vec_loss(X, Y, M, loss="mse", scale=1.0, reduction="sum")),
                               (d ** 2).sum(), rtol=1e-12)
    # the unmasked positions play no part: change them, the loss and its gradient there stay 0
    x2 = x.copy()
    x2[~mask] += 5.0
    xt = Tensor(xp.asarray(x2), requires_grad=True)
    loss = data2vec_loss(xt, Y, M, loss="mse")
    np.testing.assert_allclose(loss.item(), mse, rtol=1e-12)
    assert np.all(host(npjem.grad(loss, [xt])[0])[~mask] == 0)
    assert data2vec_loss(Y, Y, M).item() == 0.0


def test_data2vec_bad_inputs():
    x = np.zeros((2, 3, 4))
    mask = np.ones((2, 3), dtype=bool)
    with pytest.raises(ValueError, match=r"mask must have shape \(2, 3\)"):
        data2vec_loss(x, x, mask[:, :2])
    with pytest.raises(TypeError, match="mask must be a boolean"):
        data2vec_loss(x, x, mask.astype(float))
    with pytest.raises(ValueError, match="selects no position"):
        data2vec_loss(x, x, ~mask)
    with pytest.raises(ValueError, match=r"target must have shape \(2, 3, 4\)"):
        data2vec_loss(x, x[:1], mask)
    with pytest.raises(ValueError, match="loss must be one of"):
        data2vec_loss(x, x, mask, loss="l1")
    with pytest.raises(ValueError, match="beta"):
        data2vec_loss(x, x, mask, beta=0.0)
    with pytest.raises(ValueError, match="top_k=3 but layer_outputs holds only 2"):
        data2vec_targets([x, x], 3)
    with pytest.raises(ValueError, match=r"layer_outputs\[1\] must be 3-D"):
        data2vec_targets([x, x[0]], 2)
    with pytest.raises(ValueError, match="T >= 2"):
        data2vec_targets([x[:, :1]], 1)
    with pytest.raises(TypeError, match="layer_outputs must be a list"):
        data2vec_targets(x, 1)


def test_empty_batches_raise_naming_the_argument():
    empty = np.zeros((0, 4))
    with pytest.raises(ValueError, match="p must hold at least one sample"):
        negative_cosine(empty, empty)
    with pytest.raises(ValueError, match=r"student\[0\] must have at least one row"):
        dino([empty, empty], [empty], np.zeros(4))
