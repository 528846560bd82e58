"""npjem.crosscheck: correct implementations pass, planted bugs fail and are named, data-parallel
gathers are judged, reference files round-trip and damaged ones are refused."""
import os
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings

from npjem import crosscheck as cc

torch = pytest.importorskip("torch")
TF = torch.nn.functional


# ------------------------------------------------------------------ independent PyTorch losses

def t_info_nce(a, b, temperature=0.1, *, bug=None):
    """SimCLR's NT-Xent written from its formula (two directions summed, self term removed)."""
    if bug != "no_normalize":
        a, b = TF.normalize(a, dim=1), TF.normalize(b, dim=1)
    if bug == "no_stop_needed_but_detached":
        b = b.detach()
    n = a.shape[0]
    eye = torch.eye(n, dtype=torch.bool)
    lab = torch.arange(n)
    t = temperature if bug != "temperature_squared" else temperature ** 2

    def direction(u, v):
        cross = u @ v.T / t
        intra = (u @ u.T / t).masked_fill(eye, float("-inf"))
        return TF.cross_entropy(torch.cat([cross, intra], 1), lab, reduction="sum" if bug == "sum" else "mean")

    loss = direction(a, b) + direction(b, a)
    return -loss if bug == "sign" else loss


def t_moco(q, k, queue, temperature=0.2, *, bug=None):
    q = TF.normalize(q, dim=1)
    k = TF.normalize(k, dim=1)
    if bug != "no_detach":
        k = k.detach()
    queue = queue if bug == "no_detach" else queue.detach()
    t = temperature if bug != "temperature_mult" else 1.0 / temperature
    pos = (q * k).sum(1, keepdim=True)
    logits = torch.cat([pos, q @ queue.T], 1) / t
    loss = TF.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long),
                            reduction="sum" if bug == "sum" else "mean")
    return -loss if bug == "sign" else loss


def t_pair_margin(h_x, h_y, is_positive, margin=2.0, *, bug=None):
    d = (h_x - h_y).norm(dim=1)
    m = margin if bug != "margin_scaled" else 2 * margin
    pos = 0.5 * d ** 2
    neg = 0.5 * TF.relu(m - d) ** 2
    per = torch.where(is_positive, pos, neg)
    if bug == "sign":
        per = torch.where(is_positive, -pos, neg)
    return per.sum() if bug == "sum" else per.mean()


CORRECT = {"info_nce": t_info_nce, "moco": t_moco, "pair_margin": t_pair_margin}
BUGS = {
    "info_nce": ("sign", "sum", "temperature_squared", "no_stop_needed_but_detached", "no_normalize"),
    "moco": ("sign", "sum", "temperature_mult", "no_detach"),
    "pair_margin": ("sign", "sum", "margin_scaled"),
}


def test_every_builtin_loss_has_a_torch_twin_here():
    assert set(CORRECT) <= set(cc.names())


@pytest.mark.parametrize("name", sorted(CORRECT))
@settings(max_examples=5)
@given(data=cc.cases("info_nce"))
def test_correct_torch_implementation_passes(name, data):
    report = cc.compare(CORRECT[name], name, seed=data["seed"],
                        shapes={k: v for k, v in data["shapes"].items() if k in cc.get(name).sizes})
    assert report.ok, str(report)
    assert report.theirs_value == pytest.approx(report.ours_value, rel=1e-12)


@pytest.mark.parametrize("name,bug", [(n, b) for n in sorted(BUGS) for b in BUGS[n]])
def test_planted_bug_is_caught(name, bug):
    fn = CORRECT[name]
    for seed in (0, 1):
        report = cc.compare(lambda *a, **kw: fn(*a, **kw, bug=bug), name, seed=seed)
        assert not report.ok, f"{name} with bug {bug!r} passed:\n{report}"
        assert "FAIL" in str(report)
        with pytest.raises(cc.CrossCheckError, match="MISMATCH"):
            report.raise_if_failed()


def test_hint_names_the_convention_and_the_factor():
    mean = cc.compare(lambda a, b, temperature: t_info_nce(a, b, temperature) / 2, "info_nce")
    assert not mean.ok and "directions='mean'" in mean.hint
    summed = cc.compare(lambda *a, **kw: t_pair_margin(*a, **kw, bug="sum"), "pair_margin")
    assert "reduction='sum'" in summed.hint
    tripled = cc.compare(lambda a, b, temperature: 3 * t_info_nce(a, b, temperature), "info_nce")
    assert "3 × npjem's" in tripled.hint
    leaky = cc.compare(lambda *a, **kw: t_moco(*a, **kw, bug="no_detach"), "moco")
    assert "stop-gradient" in str(leaky) and "detach" in leaky.hint


def test_report_table_names_the_worst_element():
    report = cc.compare(lambda *a, **kw: t_info_nce(*a, **kw, bug="temperature_squared"), "info_nce")
    row = next(r for r in report.rows if r.input == "grad h_x")
    assert not row.ok and len(row.index) == 2 and row.error > 1e-3
    text = str(report)
    assert "grad h_x" in text and "worst index" in text and str(row.index) in text


def test_kwargs_and_their_kwargs_map_onto_each_other():
    def theirs(a, b, tau):
        return t_info_nce(a, b, tau)
    assert cc.compare(theirs, "info_nce", kwargs={"temperature": 0.3}, their_kwargs={"tau": 0.3}).ok
    assert not cc.compare(theirs, "info_nce", kwargs={"temperature": 0.3}, their_kwargs={"tau": 0.5}).ok


def test_user_inputs_and_shapes_by_name():
    a = np.random.default_rng(5).standard_normal((4, 3))
    b = np.random.default_rng(6).standard_normal((4, 3))
    report = cc.compare(t_info_nce, "info_nce", inputs=[a, b])
    assert report.ok and report.rows[1].ours != 0
    report = cc.compare(t_info_nce, "info_nce", shapes={"h_x": (3, 7)})
    assert report.shapes == {"N": 3, "D": 7} and report.ok


def test_draws_are_seeded_and_float64():
    x1 = cc.draw_inputs("moco", seed=4)
    x2 = cc.draw_inputs("moco", seed=4)
    x3 = cc.draw_inputs("moco", seed=5)
    assert all(np.array_equal(a, b) for a, b in zip(x1, x2))
    assert not np.array_equal(x1[0], x3[0])
    assert all(a.dtype == np.float64 for a in x1)
    np.testing.assert_allclose(np.linalg.norm(x1[2], axis=1), 1.0)   # the queue holds unit keys
    assert cc.draw_inputs("pair_margin")[2].dtype == bool


# ------------------------------------------------------------------ data parallel

class _GatherLayer(torch.autograd.Function):
    """lightly's GatherLayer: all_gather forward; backward all-reduces and keeps own slice."""

    @staticmethod
    def forward(ctx, x):
        out = [torch.empty_like(x) for _ in range(torch.distributed.get_world_size())]
        torch.distributed.all_gather(out, x)
        return tuple(out)

    @staticmethod
    def backward(ctx, *grads):
        g = torch.stack(grads)
        torch.distributed.all_reduce(g)
        return g[torch.distributed.get_rank()]


def _gather_with_grad(x):
    return torch.cat(_GatherLayer.apply(x), 0)


def _gather_without_grad(x):
    out = [torch.empty_like(x) for _ in range(torch.distributed.get_world_size())]
    torch.distributed.all_gather(out, x)
    out[torch.distributed.get_rank()] = x
    return torch.cat(out, 0)


def _dist_info_nce(gather, scale=1.0):
    def loss(a, b, temperature=0.1):
        a, b = TF.normalize(a, dim=1), TF.normalize(b, dim=1)
        big_a, big_b = gather(a), gather(b)
        n, r = a.shape[0], torch.distributed.get_rank()
        lab = torch.arange(n) + r * n
        own = torch.zeros(n, big_a.shape[0], dtype=torch.bool)
        own[torch.arange(n), lab] = True

        def direction(u, big_v, big_u):
            cross = u @ big_v.T / temperature
            intra = (u @ big_u.T / temperature).masked_fill(own, float("-inf"))
            return TF.cross_entropy(torch.cat([cross, intra], 1), lab)

        return scale * (direction(a, big_b, big_a) + direction(b, big_a, big_b))
    return loss


@pytest.mark.parametrize("k", [2, 4])
def test_world_size_passes_a_gather_with_gradient_and_catches_one_without(k):
    good = cc.compare(_dist_info_nce(_gather_with_grad), "info_nce", world_size=k, shapes={"N": 8})
    assert good.ok, str(good)
    bad = cc.compare(_dist_info_nce(_gather_without_grad), "info_nce", world_size=k, shapes={"N": 8})
    assert not bad.ok and bad.rows[0].ok          # same value, wrong gradient
    assert "drops the gradient" in bad.hint


def test_world_size_names_a_gradient_scaled_by_the_world_size():
    k = 2

    class _Summed(_GatherLayer):
        pass

    def scaled(a, b, temperature=0.1):
        # Loss multiplied by k on every worker: DDP's averaging no longer undoes the sum.
        return _dist_info_nce(_gather_with_grad, scale=1.0)(a, b, temperature) * k
    report = cc.compare(scaled, "info_nce", world_size=k, shapes={"N": 4})
    assert not report.ok and "2 × npjem's" in report.hint


def test_world_size_restores_torch_distributed_and_checks_its_arguments():
    before = torch.distributed.is_initialized()
    cc.compare(_dist_info_nce(_gather_with_grad), "info_nce", world_size=2, shapes={"N": 4})
    assert torch.distributed.is_initialized() == before
    with pytest.raises(ValueError, match="multiple of 3"):
        cc.compare(_dist_info_nce(_gather_with_grad), "info_nce", world_size=3, shapes={"N": 4})
    with pytest.raises(ValueError, match="framework='torch' only"):
        cc.compare(t_info_nce, "info_nce", framework="numpy", world_size=2, shapes={"N": 4})


def test_world_size_reraises_a_worker_error():
    def broken(a, b, temperature=0.1):
        if torch.distributed.get_rank() == 1:
            raise RuntimeError("worker 1 failed")
        return _dist_info_nce(_gather_with_grad)(a, b, temperature)
    with pytest.raises(RuntimeError, match="worker 1 failed"):
        cc.compare(broken, "info_nce", world_size=2, shapes={"N": 4})


# ------------------------------------------------------------------ NumPy and JAX

def _np_info_nce(a, b, temperature=0.1):
    with torch.no_grad():
        return float(t_info_nce(torch.from_numpy(a), torch.from_numpy(b), temperature))


def test_numpy_value_only_and_value_with_gradients():
    assert cc.compare(_np_info_nce, "info_nce", framework="numpy").ok
    assert not cc.compare(lambda a, b, temperature: 1.01 * _np_info_nce(a, b, temperature), "info_nce",
                          framework="numpy").ok

    def with_grads(a, b, temperature=0.1):
        ta, tb = (torch.from_numpy(x).requires_grad_() for x in (a, b))
        v = t_info_nce(ta, tb, temperature)
        v.backward()
        return float(v.detach()), {"h_x": ta.grad.numpy(), "h_y": -tb.grad.numpy()}   # a sign slip in h_y
    report = cc.compare(with_grads, "info_nce", framework="numpy")
    assert [r.ok for r in report.rows] == [True, True, False]


def test_jax_path():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy

    def j_info_nce(a, b, temperature=0.1, sign=1.0):
        a = a / jnp.linalg.norm(a, axis=1, keepdims=True)
        b = b / jnp.linalg.norm(b, axis=1, keepdims=True)
        eye = jnp.eye(a.shape[0], dtype=bool)

        def direction(u, v):
            logits = jnp.concatenate([u @ v.T, jnp.where(eye, -jnp.inf, u @ u.T)], 1) / temperature
            return (jax.nn.logsumexp(logits, axis=1) - jnp.sum(u * v, 1) / temperature).mean()
        return sign * (direction(a, b) + direction(b, a))

    assert cc.compare(j_info_nce, "info_nce", framework="jax").ok
    assert not cc.compare(lambda a, b, temperature: j_info_nce(a, b, temperature, -1.0), "info_nce",
                          framework="jax").ok


# ------------------------------------------------------------------ errors

def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="loss must be one of"):
        cc.compare(t_info_nce, "infonce")
    with pytest.raises(ValueError, match="framework must be one of"):
        cc.compare(t_info_nce, "info_nce", framework="tensorflow")
    with pytest.raises(TypeError, match="their_fn must be callable"):
        cc.compare(3, "info_nce")
    with pytest.raises(ValueError, match="shapes keys must be"):
        cc.compare(t_info_nce, "info_nce", shapes={"M": 3})
    with pytest.raises(ValueError, match="inputs must hold 2 arrays"):
        cc.compare(t_info_nce, "info_nce", inputs=[np.zeros((3, 2))])
    with pytest.raises(TypeError, match="float64"):
        cc.compare(lambda a, b, temperature: t_info_nce(a, b, temperature).float(), "info_nce")
    with pytest.raises(TypeError, match="scalar"):
        cc.compare(lambda a, b, temperature: a.sum(1), "info_nce")


# ------------------------------------------------------------------ reference files

@pytest.mark.parametrize("name", cc.names())
def test_reference_round_trip_for_every_loss(name, tmp_path):
    path = tmp_path / f"{name}.npz"
    ref = cc.write_reference(path, name, seed=2)
    report = cc.check_reference(path)
    assert report.ok, str(report)
    assert ref["loss"] == name and ref["npjem_version"] and "npjem.crosscheck.reference" in ref["call"]
    import json
    with np.load(path) as z:
        meta = json.loads(z["meta_json"].tobytes())
    assert meta["loss"] == name and meta["input_order"] == [i.name for i in cc.get(name).inputs]
    with np.load(path) as z:   # readable with NumPy alone: inputs/NAME, grads/NAME, value
        assert float(z["value"]) == float(ref["value"])
        for inp in cc.get(name).inputs:
            np.testing.assert_array_equal(z[f"inputs/{inp.name}"], ref["inputs"][inp.name])
            assert (f"grads/{inp.name}" in z.files) == (not inp.fixed and z[f"inputs/{inp.name}"].dtype.kind == "f")


def test_reference_file_with_a_changed_value_fails_its_check(tmp_path):
    path = tmp_path / "r.npz"
    ref = cc.reference("info_nce", seed=1)
    ref["grads"]["h_y"] = ref["grads"]["h_y"] * 1.001
    from npjem import save
    save(ref, path)
    report = cc.check_reference(path)
    assert not report.ok and [r.ok for r in report.rows] == [True, True, False]


def test_damaged_or_foreign_reference_files_get_clear_errors(tmp_path):
    good = tmp_path / "good.npz"
    cc.write_reference(good, "moco")
    with pytest.raises(FileExistsError, match="exists"):
        cc.write_reference(good, "moco")
    cc.write_reference(good, "moco", overwrite=True)

    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[: os.path.getsize(good) // 2])
    with pytest.raises(ValueError, match="not a valid npjem"):
        cc.check_reference(truncated)

    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, x=np.zeros(3))
    with pytest.raises(ValueError, match="numpy.load"):
        cc.check_reference(foreign)

    checkpoint = tmp_path / "ckpt.npz"
    from npjem import save
    save({"weights": np.zeros(2)}, checkpoint)
    with pytest.raises(ValueError, match="not a reference file"):
        cc.check_reference(checkpoint)

    hollow = tmp_path / "hollow.npz"
    ref = cc.reference("moco")
    del ref["grads"]
    save(ref, hollow)
    with pytest.raises(ValueError, match="missing grads"):
        cc.check_reference(hollow)

    with zipfile.ZipFile(good) as z:
        assert "__npjem__.json" in z.namelist()


# ------------------------------------------------------------------ the engine's self-check

def test_self_check_passes_on_the_suite_device(device):
    rows = cc.self_check(device)
    assert rows and all(ok for _, _, ok, _, _ in rows), [r for r in rows if not r[2]]
    names = {r[0] for r in rows}
    assert {"loss info_nce", "conv2d", "softmax"} <= names
    assert {r[1] for r in rows if r[0] == "conv2d"} == {1, 2}


def test_self_check_reports_a_wrong_gradient(monkeypatch):
    # x * stop_gradient(x): the analytic gradient is x, the true derivative of x² is 2x.
    monkeypatch.setattr(cc, "_engine_cases", lambda: [("broken", lambda x: x * x.detach(), [(3,)], 1)])
    rows = cc.self_check("cpu", losses=False)
    assert [(r[0], r[2]) for r in rows] == [("broken", False)] and "gradcheck" in rows[0][4]
