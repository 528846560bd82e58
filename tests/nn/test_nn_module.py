"""Module: registration, traversal, modes, dtype/device moves, state_dict and its strict load,
containers, printing, copying."""
import copy
import pickle
from collections import OrderedDict

import numpy as np
import pytest

import npjem
from npjem import nn

from _nn_util import DEVICE, T, host, skip_without_device

pytestmark = skip_without_device


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1, device=DEVICE, generator=0)
        self.bn = nn.BatchNorm2d(3, device=DEVICE)
        self.scale = nn.Parameter(npjem.ones(1, device=DEVICE))
        self.register_buffer("steps", npjem.zeros(1, device=DEVICE))
        self.register_buffer("scratch", npjem.zeros(2, device=DEVICE), persistent=False)
        self.plain = 3  # an ordinary attribute

    def forward(self, x):
        return nn.functional.relu(self.bn(self.conv(x))) * self.scale


def make_model():
    return nn.Sequential(Block(), nn.Flatten(), nn.Linear(3 * 4 * 4, 5, device=DEVICE, generator=1))


def test_registration_and_traversal_order():
    m = make_model()
    names = [n for n, _ in m.named_parameters()]
    assert names == ["0.scale", "0.conv.weight", "0.conv.bias", "0.bn.weight", "0.bn.bias", "2.weight", "2.bias"]
    assert [n for n, _ in m.named_buffers()] == [
        "0.steps", "0.scratch", "0.bn.running_mean", "0.bn.running_var", "0.bn.num_batches_tracked"]
    assert list(m.state_dict()) == [
        "0.scale", "0.steps", "0.conv.weight", "0.conv.bias", "0.bn.weight", "0.bn.bias",
        "0.bn.running_mean", "0.bn.running_var", "0.bn.num_batches_tracked", "2.weight", "2.bias"]
    assert [n for n, _ in m.named_modules()] == ["", "0", "0.conv", "0.bn", "1", "2"]
    assert [n for n, _ in m.named_children()] == ["0", "1", "2"]
    assert len(list(m.modules())) == 6 and len(list(m.children())) == 3
    assert all(p.requires_grad and isinstance(p, nn.Parameter) for p in m.parameters())
    assert not any(b.requires_grad for b in m.buffers())
    assert m[0].plain == 3 and "plain" not in m[0]._parameters
    assert m.get_submodule("0.bn") is m[0].bn and m.get_parameter("0.conv.bias") is m[0].conv.bias
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        m[0].nothing  # noqa: B018


def test_shared_parameters_are_listed_once():
    lin = nn.Linear(2, 2)
    m = nn.Sequential(lin, nn.ReLU(), lin)
    assert len(list(m.parameters())) == 2
    assert list(m.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]


def test_assignment_rules():
    m = nn.Linear(2, 3)
    with pytest.raises(TypeError, match="Parameter or None expected"):
        m.weight = npjem.zeros(3, 2)
    m.bias = None
    assert m.bias is None and "bias" not in m.state_dict()
    m.extra = nn.Parameter(npjem.zeros(2))
    assert "extra" in dict(m.named_parameters())
    del m.extra
    assert "extra" not in dict(m.named_parameters())
    bn = nn.BatchNorm1d(2)
    bn.running_mean = npjem.ones(2)  # assigning to a buffer name replaces the buffer
    assert host(bn.state_dict()["running_mean"]).tolist() == [1.0, 1.0]
    with pytest.raises(KeyError, match="already exists"):
        bn.register_buffer("weight", npjem.zeros(2))
    with pytest.raises(AttributeError, match="before Module.__init__"):
        class Bad(nn.Module):
            def __init__(self):
                self.w = nn.Parameter(npjem.zeros(1))
        Bad()


def test_train_eval_zero_grad_requires_grad_apply():
    m = make_model()
    assert m.training and m[0].bn.training
    assert m.eval() is m and not m[0].bn.training and not m[2].training
    m.train()
    assert m[0].bn.training
    x = npjem.randn(2, 2, 4, 4, device=DEVICE, generator=0)
    m(x).sum().backward()
    assert all(p.grad is not None for p in m.parameters())
    m.zero_grad(set_to_none=False)
    assert all(host(p.grad).max() == 0 for p in m.parameters())
    m.zero_grad()
    assert all(p.grad is None for p in m.parameters())
    m.requires_grad_(False)
    assert not any(p.requires_grad for p in m.parameters())
    seen = []
    m.apply(lambda mod: seen.append(type(mod).__name__))
    assert seen == ["Conv2d", "BatchNorm2d", "Block", "Flatten", "Linear", "Sequential"]


def test_to_float64_keeps_parameter_objects_and_integer_buffers():
    m = make_model()
    params = list(m.parameters())
    before = host(m[2].weight).copy()
    assert m.to(np.float64) is m
    assert [id(p) for p in m.parameters()] == [id(p) for p in params]
    assert all(p.dtype == np.float64 for p in m.parameters())
    assert m[0].bn.running_var.dtype == np.float64
    assert m[0].bn.num_batches_tracked.dtype == np.int64
    np.testing.assert_array_equal(host(m[2].weight), before.astype(np.float64))
    y = m(npjem.randn(2, 2, 4, 4, device=DEVICE, dtype=np.float64, generator=0))
    assert y.dtype == np.float64
    m.float()
    assert m[2].weight.dtype == np.float32
    m.double()
    assert m[2].weight.dtype == np.float64
    assert m.to(DEVICE) is m and m[2].weight.device == DEVICE
    with pytest.raises(TypeError, match="floating"):
        m.to(np.int32)


def test_state_dict_round_trip_and_sharing():
    a, b = make_model(), make_model()
    for p in b.parameters():
        p.data[...] = 0
    a[0].bn(npjem.randn(4, 3, 2, 2, device=DEVICE, generator=3))  # move running stats
    sd = a.state_dict()
    assert sd["0.conv.weight"] is a[0].conv.weight.data  # the module's own arrays
    w = b[0].conv.weight
    res = b.load_state_dict({k: host(v) for k, v in sd.items()})  # host arrays load on any device
    assert res.missing_keys == [] and res.unexpected_keys == []
    assert b[0].conv.weight is w  # copied into the existing storage
    for k, v in b.state_dict().items():
        np.testing.assert_array_equal(host(v), host(sd[k]))
    x = npjem.randn(2, 2, 4, 4, device=DEVICE, generator=4)
    a.eval(), b.eval()
    np.testing.assert_array_equal(host(a(x)), host(b(x)))
    # Tensors, float64 values into a float32 model, objects with .numpy()
    class Holder:
        def __init__(self, a):
            self.a = a

        def numpy(self):
            return self.a

    b.load_state_dict({k: (npjem.tensor(host(v)) if i % 2 else Holder(host(v).astype(np.float64)))
                       for i, (k, v) in enumerate(sd.items())})
    assert b[2].weight.dtype == np.float32
    np.testing.assert_array_equal(host(b[2].weight), host(a[2].weight))


def test_strict_load_lists_every_problem_and_copies_nothing():
    m = make_model()
    sd = {k: host(v).copy() for k, v in m.state_dict().items()}
    del sd["0.bn.running_mean"], sd["2.bias"]
    sd["0.extra"] = np.zeros(1)
    sd["2.weight"] = np.zeros((4, 48))
    sd["0.conv.bias"] = np.full(3, 7.0, dtype=np.float32)
    before = host(m[0].conv.bias).copy()
    with pytest.raises(nn.StateDictError) as info:
        m.load_state_dict(sd)
    msg = str(info.value)
    for key in ('"0.bn.running_mean"', '"2.bias"', '"0.extra"', "size mismatch for 2.weight", "(4, 48)", "(5, 48)"):
        assert key in msg
    assert isinstance(info.value, KeyError) and isinstance(info.value, ValueError)
    assert info.value.missing_keys == ["0.bn.running_mean", "2.bias"]
    assert info.value.unexpected_keys == ["0.extra"] and info.value.mismatched_keys == ["2.weight"]
    np.testing.assert_array_equal(host(m[0].conv.bias), before)  # nothing was copied
    # non-strict: missing/unexpected are reported, a shape mismatch still raises
    with pytest.raises(ValueError, match="size mismatch"):
        m.load_state_dict(sd, strict=False)
    sd["2.weight"] = np.zeros((5, 48))
    res = m.load_state_dict(sd, strict=False)
    assert res.missing_keys == ["0.bn.running_mean", "2.bias"] and res.unexpected_keys == ["0.extra"]
    np.testing.assert_array_equal(host(m[0].conv.bias), np.full(3, 7.0))
    with pytest.raises(TypeError, match="mapping"):
        m.load_state_dict([1, 2])


def test_non_persistent_buffers_are_not_saved():
    m = Block()
    assert "scratch" not in m.state_dict() and "scratch" in dict(m.named_buffers())


def test_repr_like_pytorch():
    m = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Sequential(nn.Linear(4, 2)))
    assert repr(m) == (
        "Sequential(\n"
        "  (0): Conv2d(3, 8, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))\n"
        "  (1): ReLU()\n"
        "  (2): Sequential(\n"
        "    (0): Linear(in_features=4, out_features=2, bias=True)\n"
        "  )\n"
        ")")
    assert repr(nn.Parameter(npjem.zeros(1))).startswith("Parameter containing:\n")


def test_sequential_modulelist_moduledict():
    a, b, c = nn.ReLU(), nn.Tanh(), nn.Sigmoid()
    s = nn.Sequential(a, b)
    assert len(s) == 2 and s[0] is a and s[-1] is b and list(s) == [a, b]
    s.append(c)
    assert s[2] is c and isinstance(s[1:], nn.Sequential) and list(s[1:]) == [b, c]
    del s[0]
    assert list(s._modules) == ["0", "1"] and s[0] is b
    s.insert(0, a)
    assert list(s) == [a, b, c]
    with pytest.raises(IndexError):
        s[3]  # noqa: B018
    x = T(np.array([-1.0, 2.0]))
    np.testing.assert_allclose(host(s(x)), 1 / (1 + np.exp(-np.tanh([0.0, 2.0]))))
    named = nn.Sequential(OrderedDict([("first", nn.Linear(2, 2)), ("act", nn.ReLU())]))
    assert list(named.state_dict()) == ["first.weight", "first.bias"]
    ml = nn.ModuleList([nn.Linear(2, 2), nn.Linear(2, 3)])
    ml.append(nn.Linear(3, 1))
    assert len(ml) == 3 and list(ml.state_dict())[-1] == "2.bias" and len(list(ml.parameters())) == 6
    with pytest.raises(NotImplementedError):
        ml(x)
    md = nn.ModuleDict({"enc": nn.Linear(2, 2)})
    md["head"] = nn.Linear(2, 1)
    assert list(md) == ["enc", "head"] and "head" in md and list(md.state_dict())[2] == "head.weight"
    assert nn.Identity(3, foo=1)(x) is x


def test_deepcopy_and_pickle_keep_parameters():
    m = make_model()
    m2 = copy.deepcopy(m)
    assert isinstance(m2[2].weight, nn.Parameter) and m2[2].weight is not m[2].weight
    np.testing.assert_array_equal(host(m2[2].weight), host(m[2].weight))
    m2[2].weight.data[...] = 0
    assert host(m[2].weight).any()
    m3 = pickle.loads(pickle.dumps(m))
    assert list(m3.state_dict()) == list(m.state_dict())
