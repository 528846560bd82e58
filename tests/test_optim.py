"""Optimizers, schedules and EMA: closed-form steps by hand, invariants, and PyTorch parity."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import npjem
from npjem import backend, optim


def param(values, xp=np, dtype=np.float64):
    return npjem.Tensor(xp.asarray(np.array(values, dtype=dtype)), requires_grad=True)


def set_grad(p, values):
    p.grad = npjem.Tensor(p.xp.asarray(np.array(values, dtype=p.dtype)))


def host(p):
    return backend.to_numpy(p.data)


# ============================================================================ SGD

def test_sgd_plain_step(xp):
    p = param([1.0, -2.0, 3.0], xp)
    opt = optim.SGD([p], lr=0.1)
    set_grad(p, [0.5, 1.0, -2.0])
    opt.step()
    np.testing.assert_allclose(host(p), [0.95, -2.1, 3.2], rtol=0, atol=1e-15)


def test_sgd_momentum_weight_decay_two_steps_by_hand(xp):
    # lr 0.1, μ 0.9, λ 0.01, θ0 = 1, g1 = 2, g2 = -1:
    # d1 = 2 + 0.01·1 = 2.01; b1 = 2.01; θ1 = 1 − 0.201 = 0.799
    # d2 = −1 + 0.00799 = −0.99201; b2 = 0.9·2.01 − 0.99201 = 0.81699; θ2 = 0.799 − 0.081699 = 0.717301
    p = param([1.0], xp)
    opt = optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=0.01)
    set_grad(p, [2.0])
    opt.step()
    np.testing.assert_allclose(host(p), [0.799], rtol=1e-14)
    set_grad(p, [-1.0])
    opt.step()
    np.testing.assert_allclose(host(p), [0.717301], rtol=1e-14)
    np.testing.assert_allclose(backend.to_numpy(opt.state[p]["momentum_buffer"]), [0.81699], rtol=1e-14)


def test_sgd_nesterov_two_steps_by_hand(xp):
    # lr 0.1, μ 0.9, θ0 = 1, g1 = 2, g2 = -1 (no wd):
    # b1 = 2, d1 = 2 + 0.9·2 = 3.8, θ1 = 0.62; b2 = 1.8 − 1 = 0.8, d2 = −1 + 0.72 = −0.28, θ2 = 0.648
    p = param([1.0], xp)
    opt = optim.SGD([p], lr=0.1, momentum=0.9, nesterov=True)
    set_grad(p, [2.0])
    opt.step()
    np.testing.assert_allclose(host(p), [0.62], rtol=1e-14)
    set_grad(p, [-1.0])
    opt.step()
    np.testing.assert_allclose(host(p), [0.648], rtol=1e-14)


def test_sgd_dampening_applies_from_the_second_step(xp):
    # The buffer starts at the first gradient undamped: b1 = 2; b2 = 0.5·2 + (1 − 0.25)·4 = 4
    p = param([0.0], xp)
    opt = optim.SGD([p], lr=1.0, momentum=0.5, dampening=0.25)
    set_grad(p, [2.0])
    opt.step()
    np.testing.assert_allclose(host(p), [-2.0])
    set_grad(p, [4.0])
    opt.step()
    np.testing.assert_allclose(host(p), [-6.0])


def test_momentum_buffer_does_not_alias_the_gradient():
    p = param([1.0, 2.0])
    g = np.array([1.0, 1.0])
    p.grad = npjem.Tensor(g)
    opt = optim.SGD([p], lr=0.1, momentum=0.9)
    opt.step()
    opt.step()  # the second step updates the buffer in place
    np.testing.assert_array_equal(g, [1.0, 1.0])


def test_sgd_works_with_engine_gradients_including_read_only_broadcasts():
    w = param(np.arange(6.0).reshape(2, 3))
    b = param([0.5, -0.5, 1.0])
    loss = (w + b).sum()  # the gradient of b is a reduction, of w a broadcast of ones
    loss.backward()
    opt = optim.SGD([w, b], lr=0.1, momentum=0.9, nesterov=True)
    opt.step()
    opt.step()
    np.testing.assert_allclose(host(w), np.arange(6.0).reshape(2, 3) - 0.1 * (1.9 + 2.71))
    # nesterov, g = 1 twice: b1 = 1, d1 = 1.9; b2 = 1.9, d2 = 1 + 0.9·1.9 = 2.71


# ============================================================================ Adam / AdamW

def test_adam_first_step_by_hand(xp):
    # At t = 1 the bias-corrected moments are g and g², so θ ← θ − lr g / (|g| + ε).
    theta0, g = np.array([0.3, -1.2, 2.0]), np.array([0.1, -4.0, 0.0])
    lr, eps = 0.01, 1e-8
    p = param(theta0, xp)
    opt = optim.Adam([p], lr=lr, eps=eps)
    set_grad(p, g)
    opt.step()
    np.testing.assert_allclose(host(p), theta0 - lr * g / (np.abs(g) + eps), rtol=1e-13, atol=1e-16)


def test_adam_l2_and_adamw_decoupled_first_step_by_hand(xp):
    theta0, g = np.array([0.5, -2.0]), np.array([0.3, 0.1])
    lr, wd, eps = 0.1, 0.2, 1e-8
    p = param(theta0, xp)
    opt = optim.Adam([p], lr=lr, weight_decay=wd, eps=eps)
    set_grad(p, g)
    opt.step()
    gl2 = g + wd * theta0
    np.testing.assert_allclose(host(p), theta0 - lr * gl2 / (np.abs(gl2) + eps), rtol=1e-13)

    q = param(theta0, xp)
    opt = optim.AdamW([q], lr=lr, weight_decay=wd, eps=eps)
    set_grad(q, g)
    opt.step()
    np.testing.assert_allclose(host(q), theta0 * (1 - lr * wd) - lr * g / (np.abs(g) + eps), rtol=1e-13)


def test_adam_two_steps_by_hand():
    theta, g1, g2 = np.array([1.0, -1.0]), np.array([0.2, -0.4]), np.array([-0.1, 0.3])
    lr, b1, b2, eps = 0.05, 0.8, 0.9, 1e-6
    p = param(theta)
    opt = optim.Adam([p], lr=lr, betas=(b1, b2), eps=eps)
    m = v = np.zeros(2)
    for t, g in enumerate([g1, g2], start=1):
        set_grad(p, g)
        opt.step()
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        theta = theta - lr / (1 - b1 ** t) * m / (np.sqrt(v) / math.sqrt(1 - b2 ** t) + eps)
    np.testing.assert_allclose(host(p), theta, rtol=1e-14)
    assert opt.state[p]["step"] == 2


def test_adamw_default_weight_decay_is_torchs():
    p = param([1.0])
    assert optim.AdamW([p]).param_groups[0]["weight_decay"] == 1e-2
    assert optim.Adam([p]).param_groups[0]["weight_decay"] == 0.0


# ============================================================================ common behaviour

ALL_OPTIMIZERS = [
    lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=1e-3, nesterov=True),
    lambda ps: optim.Adam(ps, lr=1e-2, weight_decay=1e-3, amsgrad=True),
    lambda ps: optim.AdamW(ps, lr=1e-2),
    lambda ps: optim.LARS(ps, lr=0.5, weight_decay=1e-3),
    lambda ps: optim.LARS(ps, lr=0.5, weight_decay=1e-3, lr_in_momentum=False),
]


@pytest.mark.parametrize("make", ALL_OPTIMIZERS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_kept(make, dtype, xp):
    rng = np.random.default_rng(0)
    w = param(rng.standard_normal((3, 4)), xp, dtype)
    b = param(rng.standard_normal(4), xp, dtype)
    opt = make([w, b])
    for _ in range(3):
        set_grad(w, rng.standard_normal((3, 4)))
        set_grad(b, rng.standard_normal(4))
        opt.step()
    for p in (w, b):
        assert p.dtype == dtype and p.data.dtype == dtype
        for v in opt.state[p].values():
            if backend.is_array(v):
                assert v.dtype == dtype


@given(lr=st.floats(1e-4, 1.0), momentum=st.floats(0.0, 0.99), wd=st.floats(0.0, 0.1),
       nesterov=st.booleans())
def test_float32_params_stay_float32_for_any_hyperparameters(lr, momentum, wd, nesterov):
    # numpy.float64 hyperparameters would promote under NEP 50 if they reached an array.
    p = param(np.ones((2, 2)), dtype=np.float32)
    opt = optim.SGD([p], lr=np.float64(lr), momentum=np.float64(momentum) if nesterov else momentum,
                    weight_decay=np.float64(wd), nesterov=nesterov and momentum > 0)
    for _ in range(2):
        set_grad(p, np.full((2, 2), 0.5))
        opt.step()
    assert p.data.dtype == np.float32
    if momentum > 0:
        assert opt.state[p]["momentum_buffer"].dtype == np.float32


@pytest.mark.parametrize("make", ALL_OPTIMIZERS)
def test_parameters_without_gradient_are_skipped(make):
    a, b = param([1.0, 2.0]), param([3.0, 4.0])
    opt = make([a, b])
    set_grad(a, [1.0, 1.0])
    opt.step()
    np.testing.assert_array_equal(host(b), [3.0, 4.0])
    assert b not in opt.state or not opt.state[b]
    assert not np.array_equal(host(a), [1.0, 2.0])


def test_param_groups_have_their_own_options():
    a, b = param([1.0]), param([1.0])
    opt = optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.5, "weight_decay": 1.0}], lr=0.1)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.5]
    assert opt.param_groups[0]["weight_decay"] == 0.0
    set_grad(a, [1.0])
    set_grad(b, [1.0])
    opt.step()
    np.testing.assert_allclose(host(a), [0.9])
    np.testing.assert_allclose(host(b), [1.0 - 0.5 * 2.0])


def test_zero_grad():
    p = param([1.0, 2.0])
    opt = optim.SGD([p], lr=0.1)
    set_grad(p, [1.0, 1.0])
    opt.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(p.grad.data, [0.0, 0.0])
    assert p.grad.dtype == p.dtype
    opt.zero_grad()
    assert p.grad is None


def test_step_closure_is_evaluated_with_grad():
    p = param([2.0])
    opt = optim.SGD([p], lr=0.25)

    def closure():
        opt.zero_grad()
        loss = (p * p).sum()
        loss.backward()
        return loss

    with npjem.no_grad():
        loss = opt.step(closure)
    assert loss.item() == 4.0
    np.testing.assert_allclose(host(p), [2.0 - 0.25 * 4.0])


@pytest.mark.parametrize("bad, match", [
    (lambda p: optim.SGD([], lr=0.1), "empty"),
    (lambda p: optim.SGD([p, p], lr=0.1), "more than once"),
    (lambda p: optim.SGD([{"params": [p]}, {"params": [p]}], lr=0.1), "more than one parameter group"),
    (lambda p: optim.SGD([p], lr=-1.0), "lr"),
    (lambda p: optim.SGD([p], lr=0.1, nesterov=True), "nesterov"),
    (lambda p: optim.SGD([p], lr=0.1, momentum=-0.1), "momentum"),
    (lambda p: optim.Adam([p], betas=(0.9, 1.0)), "betas"),
    (lambda p: optim.Adam([p], eps=-1.0), "eps"),
    (lambda p: optim.SGD([{"params": [p], "lrr": 0.1}], lr=0.1), "unknown"),
    (lambda p: optim.LARS([p]), "required"),
    (lambda p: optim.LARS([p], lr=0.1, trust_coefficient=0.01, eta=0.02), "alias"),
    (lambda p: optim.LARS([{"params": [p], "lars_exclude": "yes"}], lr=0.1), "lars_exclude"),
])
def test_bad_arguments_raise_value_error(bad, match):
    with pytest.raises(ValueError, match=match):
        bad(param([1.0]))


def test_bad_parameter_types_raise_type_error():
    p = param([1.0])
    with pytest.raises(TypeError, match="single Tensor"):
        optim.SGD(p, lr=0.1)
    with pytest.raises(TypeError, match="ordered"):
        optim.SGD({p}, lr=0.1)
    with pytest.raises(TypeError, match="Tensors"):
        optim.SGD([np.ones(2)], lr=0.1)
    with pytest.raises(ValueError, match="non-leaf"):
        optim.SGD([p * 2], lr=0.1)
    with pytest.raises(TypeError, match="lr"):
        optim.SGD([p], lr="0.1")


def test_gradient_of_the_wrong_shape_raises():
    p = param([1.0, 2.0])
    opt = optim.SGD([p], lr=0.1)
    p.grad = npjem.Tensor(np.ones(3))
    with pytest.raises(ValueError, match="shape"):
        opt.step()


@pytest.mark.parametrize("make", ALL_OPTIMIZERS)
def test_state_dict_round_trip_resumes_identically(make, tmp_path):
    rng = np.random.default_rng(1)
    w0, b0 = rng.standard_normal((2, 3)), rng.standard_normal(3)
    grads = [(rng.standard_normal((2, 3)), rng.standard_normal(3)) for _ in range(4)]

    def run(steps, opt=None, ps=None):
        ps = ps or [param(w0), param(b0)]
        opt = opt or make([{"params": [ps[0]]}, {"params": [ps[1]], "lr": 0.05}])
        for gw, gb in steps:
            set_grad(ps[0], gw)
            set_grad(ps[1], gb)
            opt.step()
        return opt, ps

    _, ref_ps = run(grads)
    opt, ps = run(grads[:2])
    npjem.save({"optimizer": opt.state_dict(), "params": [host(p) for p in ps]}, tmp_path / "ckpt.npz")
    ck = npjem.load(tmp_path / "ckpt.npz")
    ps2 = [param(a) for a in ck["params"]]
    opt2 = make([{"params": [ps2[0]]}, {"params": [ps2[1]], "lr": 123.0}])
    opt2.load_state_dict(ck["optimizer"])
    assert opt2.param_groups[1]["lr"] == 0.05  # options come from the checkpoint
    run(grads[2:], opt2, ps2)
    for p, q in zip(ref_ps, ps2):
        np.testing.assert_array_equal(host(p), host(q))


def test_load_state_dict_rejects_mismatched_groups():
    a, b = param([1.0]), param([2.0])
    sd = optim.SGD([a, b], lr=0.1).state_dict()
    with pytest.raises(ValueError, match="size"):
        optim.SGD([a], lr=0.1).load_state_dict(sd)
    with pytest.raises(ValueError, match="groups"):
        optim.SGD([{"params": [a]}, {"params": [b]}], lr=0.1).load_state_dict(sd)
    with pytest.raises(ValueError, match="state"):
        optim.SGD([a], lr=0.1).load_state_dict({"param_groups": []})


# ============================================================================ LARS

def test_lars_trust_ratio_two_steps_by_hand(xp):
    w0 = np.array([[3.0, 0.0], [0.0, 4.0]])  # ‖w‖ = 5
    g1 = np.array([[1.0, 2.0], [2.0, 0.0]])
    g2 = np.array([[0.0, -1.0], [1.0, 1.0]])
    lr, mu, wd, eta = 0.5, 0.9, 0.1, 0.02
    w = param(w0, xp)
    opt = optim.LARS([w], lr=lr, momentum=mu, weight_decay=wd, trust_coefficient=eta)
    theta, buf = w0.copy(), np.zeros_like(w0)
    for g in (g1, g2):
        set_grad(w, g)
        opt.step()
        d = g + wd * theta
        ratio = eta * np.linalg.norm(theta) / np.linalg.norm(d)
        buf = mu * buf + lr * ratio * d
        theta = theta - buf
    np.testing.assert_allclose(host(w), theta, rtol=1e-14)
    # the first update in numbers: d = g1 + 0.1 w0 = [[1.3, 2], [2, 0.4]], ‖d‖ = sqrt(9.85)
    first = 0.5 * 0.02 * 5 / math.sqrt(9.85) * np.array([[1.3, 2.0], [2.0, 0.4]])
    w2 = param(w0)
    opt2 = optim.LARS([w2], lr=lr, momentum=mu, weight_decay=wd, eta=eta)
    set_grad(w2, g1)
    opt2.step()
    np.testing.assert_allclose(host(w2), w0 - first, rtol=1e-14)


def test_lars_with_the_lr_outside_the_momentum_under_a_changing_lr(xp):
    """lr_in_momentum=False is Barlow Twins', VICReg's and BYOL's own LARS: b ← μb + r·g, θ ← θ − γ_k b."""
    w0 = np.array([[3.0, 0.0], [0.0, 4.0]])
    b0 = np.array([1.0, -2.0])
    grads = [(np.array([[1.0, 2.0], [2.0, 0.0]]), np.array([0.5, 0.25])),
             (np.array([[0.0, -1.0], [1.0, 1.0]]), np.array([-1.0, 2.0])),
             (np.array([[2.0, 1.0], [0.0, -1.0]]), np.array([0.0, 1.0]))]
    lrs, mu, wd, eta = (0.0, 0.5, 0.2), 0.9, 0.1, 0.02
    w, b = param(w0, xp), param(b0, xp)
    opt = optim.LARS([w, b], lr=lrs[0], momentum=mu, weight_decay=wd, trust_coefficient=eta, lr_in_momentum=False)
    inside = optim.LARS([param(w0, xp), param(b0, xp)], lr=lrs[0], momentum=mu, weight_decay=wd,
                        trust_coefficient=eta)
    theta, beta, m_w, m_b = w0.copy(), b0.copy(), np.zeros_like(w0), np.zeros_like(b0)
    for lr, (gw, gb) in zip(lrs, grads):
        for o in (opt, inside):
            o.param_groups[0]["lr"] = lr
            set_grad(o.param_groups[0]["params"][0], gw)
            set_grad(o.param_groups[0]["params"][1], gb)
            o.step()
        d = gw + wd * theta
        m_w = mu * m_w + eta * np.linalg.norm(theta) / np.linalg.norm(d) * d
        m_b = mu * m_b + gb  # the bias is excluded: no decay, no trust ratio
        theta, beta = theta - lr * m_w, beta - lr * m_b
    np.testing.assert_allclose(host(w), theta, rtol=1e-14)
    np.testing.assert_allclose(host(b), beta, rtol=1e-14)
    np.testing.assert_allclose(host(opt.state[w]["momentum_buffer"]), m_w, rtol=1e-14)
    # the zero lr of the first step still fills the buffer here, and not in the default form
    assert not np.allclose(host(inside.param_groups[0]["params"][0]), theta, rtol=1e-3)
    with pytest.raises(TypeError, match="lr_in_momentum"):
        optim.LARS([param(w0)], lr=0.1, lr_in_momentum="no")


def test_lars_lr_placement_does_not_matter_at_a_constant_lr():
    w0, gs = np.array([[3.0, 1.0]]), [np.array([[1.0, 2.0]]), np.array([[-1.0, 0.5]])]
    ws = [param(w0), param(w0)]
    opts = [optim.LARS([ws[0]], lr=0.3, weight_decay=0.1), optim.LARS([ws[1]], lr=0.3, weight_decay=0.1,
                                                                      lr_in_momentum=False)]
    for g in gs:
        for w, o in zip(ws, opts):
            set_grad(w, g)
            o.step()
    np.testing.assert_allclose(host(ws[1]), host(ws[0]), rtol=1e-14)


def test_lars_excludes_biases_and_norm_weights_from_decay_and_adaptation(xp):
    lr, mu, wd = 0.1, 0.9, 0.5
    bias = param([1.0, -1.0, 2.0], xp)   # ndim 1: excluded by default
    w = param([[1.0, 2.0]], xp)
    forced = param([[1.0, 2.0]], xp)     # a 2-D parameter excluded by its group
    opt = optim.LARS([{"params": [bias, w]}, {"params": [forced], "lars_exclude": True}],
                     lr=lr, momentum=mu, weight_decay=wd)
    assert optim.LARS.is_excluded(bias, opt.param_groups[0])
    assert not optim.LARS.is_excluded(w, opt.param_groups[0])
    g = [0.3, 0.1, -0.2]
    for _ in range(2):
        set_grad(bias, g)
        set_grad(forced, [[0.3, 0.1]])
        opt.step()
    # plain momentum SGD at lr: two steps of the same g move by lr·g·(1 + (1 + μ))
    np.testing.assert_allclose(host(bias), np.array([1.0, -1.0, 2.0]) - lr * np.array(g) * (2 + mu), rtol=1e-14)
    np.testing.assert_allclose(host(forced), np.array([[1.0, 2.0]]) - lr * np.array([[0.3, 0.1]]) * (2 + mu),
                               rtol=1e-14)
    np.testing.assert_array_equal(host(w), [[1.0, 2.0]])  # no gradient, no weight decay either


def test_lars_exclusion_can_be_switched_off():
    b0, g, lr, wd, eta = np.array([3.0, 4.0]), np.array([0.0, 1.0]), 0.1, 0.1, 0.01
    for opts in ({"exclude_bias_and_norm": False}, {"params_extra": {"lars_exclude": False}}):
        b = param(b0)
        group = {"params": [b], **opts.get("params_extra", {})}
        opt = optim.LARS([group], lr=lr, weight_decay=wd, trust_coefficient=eta,
                         exclude_bias_and_norm=opts.get("exclude_bias_and_norm", True))
        set_grad(b, g)
        opt.step()
        d = g + wd * b0
        np.testing.assert_allclose(host(b), b0 - lr * eta * 5.0 / np.linalg.norm(d) * d, rtol=1e-14)


def test_lars_ratio_is_one_for_a_zero_norm():
    w = param(np.zeros((2, 2)))  # ‖w‖ = 0: ratio 1, not 0 or NaN
    opt = optim.LARS([w], lr=0.1, weight_decay=0.1)
    set_grad(w, np.ones((2, 2)))
    opt.step()
    np.testing.assert_allclose(host(w), -0.1 * np.ones((2, 2)))
    v = param(np.ones((2, 2)))  # ‖g + λw‖ = 0: ratio 1, no division by zero
    opt = optim.LARS([v], lr=0.1, weight_decay=0.0)
    set_grad(v, np.zeros((2, 2)))
    with np.errstate(all="raise"):
        opt.step()
    np.testing.assert_array_equal(host(v), np.ones((2, 2)))


# ============================================================================ schedules

def test_warmup_cosine_endpoints_and_shape():
    K, W, base, final = 100, 10, 0.4, 0.004
    lr = [optim.warmup_cosine(k, K, W, base, final) for k in range(K + 1)]
    assert lr[0] == 0.0
    assert lr[5] == pytest.approx(0.2)
    assert lr[W] == pytest.approx(base)
    assert lr[K] == pytest.approx(final)
    assert lr[K - 1] > final and lr[K - 1] - final < 1e-3 * base
    assert optim.warmup_cosine(K + 50, K, W, base, final) == pytest.approx(final)
    assert optim.warmup_cosine(W + (K - W) / 2, K, W, base, final) == pytest.approx((base + final) / 2)
    assert all(a < b for a, b in zip(lr[:W], lr[1:W + 1]))   # strictly rising in the warmup
    assert all(a > b for a, b in zip(lr[W:K], lr[W + 1:]))   # strictly falling after
    assert optim.warmup_cosine(0, K, 0, base) == base        # no warmup: starts at base


@pytest.mark.parametrize("args", [(0, 0, 0, 0.1), (0, 10, 10, 0.1), (0, 10, -1, 0.1), (0, 10, 2, -0.1),
                                  (0, 10.5, 2, 0.1)])
def test_warmup_cosine_bad_arguments(args):
    with pytest.raises(ValueError):
        optim.warmup_cosine(*args)


def test_cosine_momentum_endpoints_and_shape():
    K = 50
    tau = [optim.cosine_momentum(k, K, base=0.99) for k in range(K + 1)]
    assert tau[0] == pytest.approx(0.99) and tau[K] == 1.0
    assert tau[K // 2] == pytest.approx(0.995)
    assert all(a < b for a, b in zip(tau, tau[1:]))
    assert optim.cosine_momentum(2 * K, K) == 1.0
    # the formula as BYOL writes it: 1 − (1 − τ0)(cos(πk/K) + 1)/2
    assert optim.cosine_momentum(7, K, 0.996) == pytest.approx(1 - 0.004 * (math.cos(math.pi * 7 / K) + 1) / 2)
    with pytest.raises(ValueError):
        optim.cosine_momentum(0, K, base=1.5)


def test_warmup_cosine_scheduler_keeps_group_ratios():
    a, b = param([1.0]), param([1.0])
    opt = optim.SGD([{"params": [a], "lr": 0.2}, {"params": [b], "lr": 0.0048}], lr=0.1)
    K, W = 20, 5
    sched = optim.WarmupCosine(opt, total_steps=K, warmup_steps=W)
    assert sched.get_last_lr() == [0.0, 0.0]  # step 0 set at construction
    seen = [sched.get_last_lr()]
    for _ in range(K + 3):
        opt.step()
        sched.step()
        seen.append(sched.get_last_lr())
    assert seen[W] == pytest.approx([0.2, 0.0048])
    assert seen[K] == pytest.approx([0.0, 0.0], abs=1e-15)
    assert seen[K + 3] == pytest.approx([0.0, 0.0], abs=1e-15)
    for lr0, lr1 in seen[1:K]:
        assert lr1 / lr0 == pytest.approx(0.0048 / 0.2)
    assert [g["initial_lr"] for g in opt.param_groups] == [0.2, 0.0048]


def test_warmup_cosine_scheduler_final_lr_scale_and_resume():
    p = param([1.0])
    opt = optim.SGD([p], lr=0.2)
    sched = optim.WarmupCosine(opt, total_steps=10, warmup_steps=2, final_lr_scale=0.001)
    for _ in range(10):
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.2 * 0.001)
    state = sched.state_dict()
    opt2 = optim.SGD([param([1.0])], lr=99.0)
    sched2 = optim.WarmupCosine(opt2, total_steps=3, warmup_steps=1)
    sched2.load_state_dict(state)
    assert opt2.param_groups[0]["lr"] == pytest.approx(0.2 * 0.001)
    with pytest.raises(ValueError, match="not both"):
        optim.WarmupCosine(opt, 10, 2, final_lr=0.1, final_lr_scale=0.1)
    with pytest.raises(ValueError, match="final_lr has"):
        optim.WarmupCosine(opt, 10, 2, final_lr=[0.1, 0.2])


# ============================================================================ EMA

class FakeModule:
    """Just enough of the Module API for EMA: named parameters and named buffers."""

    def __init__(self, w, b, running_mean, count=0):
        self.w = npjem.Tensor(np.array(w, dtype=np.float64), requires_grad=True)
        self.b = npjem.Tensor(np.array(b, dtype=np.float64), requires_grad=True)
        self.running_mean = np.array(running_mean, dtype=np.float64)
        self.num_batches_tracked = np.array(count, dtype=np.int64)

    def named_parameters(self):
        return [("w", self.w), ("b", self.b)]

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def named_buffers(self):
        return [("bn.running_mean", self.running_mean), ("bn.num_batches_tracked", self.num_batches_tracked)]


def ema_pair(buffers="copy"):
    target = FakeModule([[1.0, 2.0]], [0.0], [10.0, 20.0], count=1)
    online = FakeModule([[3.0, 6.0]], [4.0], [30.0, 40.0], count=7)
    return optim.EMA(target, online, momentum=0.5, buffers=buffers), target, online


def test_ema_momentum_one_keeps_zero_copies_half_averages():
    ema, target, online = ema_pair(buffers="keep")
    w_array = target.w.data
    ema.update(momentum=1.0)
    np.testing.assert_array_equal(target.w.data, [[1.0, 2.0]])
    ema.update()  # self.momentum = 0.5
    np.testing.assert_array_equal(target.w.data, [[2.0, 4.0]])
    np.testing.assert_array_equal(target.b.data, [2.0])
    assert target.w.data is w_array  # in place
    ema.update(momentum=0.0)
    np.testing.assert_array_equal(target.w.data, online.w.data)
    np.testing.assert_array_equal(target.b.data, online.b.data)
    assert target.w.data is not online.w.data
    np.testing.assert_array_equal(target.running_mean, [10.0, 20.0])  # "keep"


@pytest.mark.parametrize("mode, mean, count", [("copy", [30.0, 40.0], 7), ("average", [20.0, 30.0], 7),
                                                ("keep", [10.0, 20.0], 1)])
def test_ema_buffer_modes(mode, mean, count):
    ema, target, _ = ema_pair(buffers=mode)
    ema.update()
    np.testing.assert_array_equal(target.running_mean, mean)
    assert int(target.num_batches_tracked) == count
    np.testing.assert_array_equal(target.w.data, [[2.0, 4.0]])


def test_ema_copy_and_from_module():
    ema, target, online = ema_pair()
    ema.copy_()
    np.testing.assert_array_equal(target.w.data, online.w.data)
    np.testing.assert_array_equal(target.running_mean, online.running_mean)

    online.w.grad = npjem.Tensor(np.ones((1, 2)))
    ema2 = optim.EMA.from_module(online, momentum=0.9)
    t = ema2.target
    assert t is not online and t.w is not online.w and t.w.data is not online.w.data
    assert not t.w.requires_grad and t.w.grad is None and online.w.requires_grad
    np.testing.assert_array_equal(t.w.data, online.w.data)
    online.w.data += 1.0
    ema2.update()
    np.testing.assert_allclose(t.w.data, online.w.data - 0.9)  # 0.9·θ + 0.1·(θ + 1)


def test_ema_follows_cosine_momentum_schedule():
    ema, target, online = ema_pair()
    K = 4
    expected = target.w.data.copy()
    for k in range(K):
        m = optim.cosine_momentum(k, K, base=0.9)
        ema.update(momentum=m)
        expected = m * expected + (1 - m) * online.w.data
    np.testing.assert_allclose(target.w.data, expected, rtol=1e-15)


def test_ema_rejects_mismatched_modules_and_bad_momentum():
    target = FakeModule([[1.0, 2.0]], [0.0], [0.0, 0.0])
    online = FakeModule([[1.0, 2.0, 3.0]], [0.0], [0.0, 0.0])
    with pytest.raises(ValueError, match="shape"):
        optim.EMA(target, online)

    class Other(FakeModule):
        def named_parameters(self):
            return [("weight", self.w), ("b", self.b)]

    with pytest.raises(ValueError, match="missing in target"):
        optim.EMA(target, Other([[1.0, 2.0]], [0.0], [0.0, 0.0]))
    with pytest.raises(ValueError, match="momentum"):
        optim.EMA(target, FakeModule([[1.0, 2.0]], [0.0], [0.0, 0.0]), momentum=1.5)
    with pytest.raises(ValueError, match="buffers"):
        optim.EMA(target, FakeModule([[1.0, 2.0]], [0.0], [0.0, 0.0]), buffers="mean")
    with pytest.raises(ValueError, match="different"):
        optim.EMA(target, target)
    with pytest.raises(TypeError, match="named_parameters"):
        optim.EMA(object(), target)


# ============================================================================ PyTorch parity

TORCH_CASES = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.8, dampening=0.3, weight_decay=1e-2)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-3)),
    ("Adam", dict(lr=1e-2)),
    ("Adam", dict(lr=3e-3, betas=(0.8, 0.95), eps=1e-6, weight_decay=1e-2)),
    ("Adam", dict(lr=1e-2, weight_decay=1e-2, amsgrad=True)),
    ("AdamW", dict(lr=1e-2)),
    ("AdamW", dict(lr=5e-3, betas=(0.85, 0.99), weight_decay=0.1, amsgrad=True)),
]


@pytest.mark.parametrize("steps", [1, 3])
@pytest.mark.parametrize("name, kwargs", TORCH_CASES)
def test_matches_torch_optim_in_float64(name, kwargs, steps):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(steps * 100 + TORCH_CASES.index((name, kwargs)))
    shapes = [(4, 3), (3,), (2, 2, 2)]
    inits = [rng.standard_normal(s) for s in shapes]
    ours = [param(a) for a in inits]
    theirs = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in inits]
    # two groups, the second with its own lr, as in a real training script
    our_opt = getattr(optim, name)([{"params": ours[:2]}, {"params": ours[2:], "lr": kwargs["lr"] / 2}], **kwargs)
    their_opt = getattr(torch.optim, name)([{"params": theirs[:2]}, {"params": theirs[2:], "lr": kwargs["lr"] / 2}],
                                           **kwargs)
    for _ in range(steps):
        for p, t in zip(ours, theirs):
            g = rng.standard_normal(p.shape)
            set_grad(p, g)
            t.grad = torch.tensor(g, dtype=torch.float64)
        our_opt.step()
        their_opt.step()
    for p, t in zip(ours, theirs):
        np.testing.assert_allclose(host(p), t.detach().numpy(), rtol=0, atol=1e-10)
        assert np.abs(host(p) - t.detach().numpy()).max() < 1e-10


@pytest.mark.parametrize("name, kwargs", [TORCH_CASES[3], TORCH_CASES[6], TORCH_CASES[8]])
def test_resumes_from_a_torch_optimizer_state_dict(name, kwargs):
    """A torch state_dict with tensors turned into arrays loads, and training goes on identically."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    theirs = [torch.tensor(rng.standard_normal(s), requires_grad=True) for s in [(3, 2), (2,)]]
    their_opt = getattr(torch.optim, name)(theirs, **kwargs)

    def torch_step():
        gs = [rng.standard_normal(t.shape) for t in theirs]
        for t, g in zip(theirs, gs):
            t.grad = torch.tensor(g)
        their_opt.step()
        return gs

    torch_step()
    torch_step()
    sd = their_opt.state_dict()
    converted = {"state": {i: {k: v.numpy() for k, v in st.items()} for i, st in sd["state"].items()},
                 "param_groups": sd["param_groups"]}
    ours = [param(t.detach().numpy().copy()) for t in theirs]
    our_opt = getattr(optim, name)(ours, lr=123.0)
    our_opt.load_state_dict(converted)
    assert our_opt.param_groups[0]["lr"] == kwargs["lr"]
    for _ in range(2):
        for p, g in zip(ours, torch_step()):
            set_grad(p, g)
        our_opt.step()
    for p, t in zip(ours, theirs):
        np.testing.assert_allclose(host(p), t.detach().numpy(), rtol=0, atol=1e-10)


def test_load_state_dict_refuses_switched_on_options_it_lacks():
    p = param([1.0])
    sd = optim.SGD([p], lr=0.1).state_dict()
    sd["param_groups"][0]["foreach"] = None      # off: ignored
    sd["param_groups"][0]["maximize"] = False
    optim.SGD([p], lr=0.1).load_state_dict(sd)
    sd["param_groups"][0]["maximize"] = True     # on: would change the algorithm
    with pytest.raises(ValueError, match="maximize"):
        optim.SGD([p], lr=0.1).load_state_dict(sd)


# ============================================================================ with real modules

def small_net(seed=0, dtype=None):
    nn = pytest.importorskip("npjem.nn")
    return nn.Sequential(nn.Linear(3, 4, generator=seed, dtype=dtype), nn.BatchNorm1d(4, dtype=dtype),
                         nn.ReLU(), nn.Linear(4, 2, bias=False, generator=seed + 1, dtype=dtype))


def train_step(model, opt, seed):
    x = npjem.randn(6, 3, generator=seed, dtype=model[0].weight.dtype)
    opt.zero_grad()
    loss = (model(x) ** 2).mean()
    loss.backward()
    opt.step()
    return loss.item()


def params_of(module):
    return {n: backend.to_numpy(p.data).copy() for n, p in module.named_parameters()}


def test_ema_of_linear_and_batchnorm():
    online = small_net()
    ema = optim.EMA.from_module(online, momentum=0.75)
    target = ema.target
    assert type(target.get_parameter("0.weight")) is type(online.get_parameter("0.weight"))
    assert all(not p.requires_grad for p in target.parameters())
    assert all(p.requires_grad for p in online.parameters())
    before = params_of(target)
    opt = optim.SGD(online.parameters(), lr=0.1, momentum=0.9)
    train_step(online, opt, seed=1)  # trains, and moves the online BN running stats
    after = params_of(online)
    assert any(not np.array_equal(before[n], after[n]) for n in before)
    ema.update()
    for n, p in target.named_parameters():
        np.testing.assert_allclose(backend.to_numpy(p.data), 0.75 * before[n] + 0.25 * after[n], rtol=1e-6)
        assert p.grad is None
    for (n, tb), (_, ob) in zip(target.named_buffers(), online.named_buffers()):
        np.testing.assert_array_equal(backend.to_numpy(tb.data), backend.to_numpy(ob.data))  # "copy"
    assert int(target[1].num_batches_tracked.item()) == 1
    ema.update(momentum=0.0)
    for (n, tp), (_, op) in zip(target.named_parameters(), online.named_parameters()):
        np.testing.assert_array_equal(backend.to_numpy(tp.data), backend.to_numpy(op.data))
    snapshot = params_of(target)
    train_step(online, opt, seed=2)
    ema.update(momentum=1.0)
    assert all(np.array_equal(snapshot[n], v) for n, v in params_of(target).items())


def test_ema_keep_buffers_lets_the_target_keep_its_own_statistics():
    online = small_net()
    ema = optim.EMA.from_module(online, momentum=0.5, buffers="keep")
    x = npjem.randn(6, 3, generator=3)
    with npjem.no_grad():
        ema.target(x)  # the target's own forward in train mode (BYOL, MoCo)
    own = backend.to_numpy(ema.target[1].running_mean.data).copy()
    online(x * 3.0)
    ema.update()
    np.testing.assert_array_equal(backend.to_numpy(ema.target[1].running_mean.data), own)
    assert not np.array_equal(own, backend.to_numpy(online[1].running_mean.data))


def test_lars_on_a_module_excludes_biases_and_batchnorm_parameters():
    model = small_net()
    opt = optim.LARS(model.parameters(), lr=0.1, weight_decay=0.5, momentum=0.0, trust_coefficient=0.01)
    excluded = {n for n, p in model.named_parameters() if optim.LARS.is_excluded(p, opt.param_groups[0])}
    assert excluded == {"0.bias", "1.weight", "1.bias"}
    before = params_of(model)
    x = npjem.randn(6, 3, generator=1)
    opt.zero_grad()
    (model(x) ** 2).mean().backward()
    grads = {n: backend.to_numpy(p.grad.data).copy() for n, p in model.named_parameters()}
    opt.step()
    after = params_of(model)
    for n in before:
        if n in excluded:  # plain SGD: no decay, no trust ratio
            np.testing.assert_allclose(after[n], before[n] - 0.1 * grads[n], rtol=1e-5, atol=1e-7)
        else:
            d = grads[n] + 0.5 * before[n]
            ratio = 0.01 * np.linalg.norm(before[n]) / np.linalg.norm(d)
            np.testing.assert_allclose(after[n], before[n] - 0.1 * ratio * d, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("make", ALL_OPTIMIZERS)
def test_float32_module_trains_and_stays_float32(make):
    model = small_net()
    opt = make(model.parameters())
    losses = [train_step(model, opt, seed=0) for _ in range(5)]
    assert all(p.data.dtype == np.float32 for p in model.parameters())
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
