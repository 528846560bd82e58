"""Backbones, attention and heads against PyTorch twins with copied weights (float64).

The twins are written here with torch.nn layers (no torchvision needed) under the same names,
so npjem's state_dict loads into them; outputs, input gradients, parameter gradients and the
BatchNorm running statistics must agree to 1e-10.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
tnn = torch.nn

import npjem  # noqa: E402
from npjem import Tensor, backend, nn  # noqa: E402

from _nn_util import DEVICE, host, skip_without_device  # noqa: E402

pytestmark = skip_without_device
TOL = dict(rtol=1e-10, atol=1e-10)


def to_torch_state(sd):
    # host copies (np.array copies, so torch never shares npjem's own arrays)
    return {k: torch.from_numpy(np.array(host(v))) for k, v in sd.items()}


def dev(a):
    """A host NumPy array (an attention or patch mask) moved to the device under test."""
    return backend.to_device(a, DEVICE)


def assign(t, values):
    """Overwrite a parameter or buffer in place with host values."""
    t.data[...] = backend.to_device(values, t.device)


def check_same_pass(ours, theirs, x, train, head=None, seed=0):
    """Forward + backward of a random projection of the output in both; compare everything."""
    ours.train(train)
    theirs.train(train)
    xo = Tensor(x.copy(), device=DEVICE, requires_grad=True)
    xt = torch.tensor(x, requires_grad=True)
    yo, yt = ours(xo), theirs(xt)
    if isinstance(yo, tuple):
        yo, yt = yo[0], yt[0]
    np.testing.assert_allclose(yo.numpy(), yt.detach().numpy(), **TOL)
    v = np.random.default_rng(seed).standard_normal(yo.shape)
    (yo * Tensor(v, device=DEVICE)).sum().backward()
    (yt * torch.from_numpy(v)).sum().backward()
    np.testing.assert_allclose(xo.grad.numpy(), xt.grad.numpy(), **TOL)
    tp = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        assert name in tp, name
        if tp[name].grad is None:
            assert p.grad is None or np.all(p.grad.numpy() == 0), name
            continue
        np.testing.assert_allclose(p.grad.numpy(), tp[name].grad.numpy(), err_msg=name, **TOL)
    tsd = theirs.state_dict()
    for k, v in ours.state_dict().items():
        np.testing.assert_allclose(host(v), tsd[k].numpy(), err_msg=k, **TOL)
    ours.zero_grad()
    theirs.zero_grad()


# ============================================================================ attention

@pytest.mark.parametrize("bias", [True, False])
def test_mha_matches_torch(bias):
    rng = np.random.default_rng(0)
    e, h = 8, 2
    ours = nn.MultiheadAttention(e, h, bias=bias, generator=0).double()
    theirs = tnn.MultiheadAttention(e, h, bias=bias, batch_first=True, dtype=torch.float64)
    theirs.load_state_dict(to_torch_state(ours.state_dict()))
    q, k, v = rng.standard_normal((2, 3, e)), rng.standard_normal((2, 5, e)), rng.standard_normal((2, 5, e))
    kpm = np.zeros((2, 5), bool)
    kpm[0, 4] = kpm[1, 0] = True
    am = rng.standard_normal((3, 5)) * 0.5
    cases = [
        dict(),
        dict(key_padding_mask=kpm),
        dict(attn_mask=np.triu(np.ones((3, 5), bool), k=3)),
        # float masks are added to the logits (−inf: excluded); torch wants both of one type
        dict(attn_mask=am, key_padding_mask=np.where(kpm, -np.inf, 0.0), average_attn_weights=False),
    ]
    for kw in cases:
        ins_o = [Tensor(a.copy(), device=DEVICE, requires_grad=True) for a in (q, k, v)]
        ins_t = [torch.tensor(a, requires_grad=True) for a in (q, k, v)]
        kw_o = {key: (dev(val) if isinstance(val, np.ndarray) else val) for key, val in kw.items()}
        kw_t = {key: (torch.from_numpy(val) if isinstance(val, np.ndarray) else val) for key, val in kw.items()}
        yo, wo = ours(*ins_o, **kw_o)
        yt, wt = theirs(*ins_t, **kw_t)
        np.testing.assert_allclose(yo.numpy(), yt.detach().numpy(), **TOL)
        np.testing.assert_allclose(wo.numpy(), wt.detach().numpy(), **TOL)
        g = rng.standard_normal(yo.shape)
        go = npjem.grad(yo, ins_o + [ours.in_proj_weight, ours.out_proj.weight],
                        grad_outputs=Tensor(g, device=DEVICE))
        gt = torch.autograd.grad(yt, ins_t + [theirs.in_proj_weight, theirs.out_proj.weight],
                                 grad_outputs=torch.from_numpy(g))
        for a, b in zip(go, gt):
            np.testing.assert_allclose(a.numpy(), b.numpy(), **TOL)


def test_mha_self_attention_and_fast_path_match_torch():
    rng = np.random.default_rng(1)
    ours = nn.MultiheadAttention(6, 3, generator=1).double()
    theirs = tnn.MultiheadAttention(6, 3, batch_first=True, dtype=torch.float64)
    theirs.load_state_dict(to_torch_state(ours.state_dict()))
    x = rng.standard_normal((2, 4, 6))
    xo, xt = Tensor(x.copy(), device=DEVICE, requires_grad=True), torch.tensor(x, requires_grad=True)
    # need_weights=False sends torch down its fused scaled_dot_product_attention path
    yo, _ = ours(xo, xo, xo, need_weights=False)
    yt, _ = theirs(xt, xt, xt, need_weights=False)
    np.testing.assert_allclose(yo.numpy(), yt.detach().numpy(), **TOL)
    g = rng.standard_normal(yo.shape)
    gxo, = npjem.grad(yo, [xo], grad_outputs=Tensor(g, device=DEVICE))
    gxt, = torch.autograd.grad(yt, [xt], grad_outputs=torch.from_numpy(g))
    np.testing.assert_allclose(gxo.numpy(), gxt.numpy(), **TOL)


# ============================================================================ ResNet twins

class TorchBasicBlock(tnn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = tnn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = tnn.BatchNorm2d(cout)
        self.relu = tnn.ReLU()
        self.conv2 = tnn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = tnn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = tnn.Sequential(tnn.Conv2d(cin, cout, 1, stride, bias=False), tnn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class TorchCifarResNet(tnn.Module):
    def __init__(self, layers, widths, num_classes=None):
        super().__init__()
        self.conv1 = tnn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        self.bn1 = tnn.BatchNorm2d(widths[0])
        self.relu = tnn.ReLU()
        cin = widths[0]
        for i, (n, w) in enumerate(zip(layers, widths)):
            blocks = []
            for j in range(n):
                blocks.append(TorchBasicBlock(cin, w, 2 if (i > 0 and j == 0) else 1))
                cin = w
            setattr(self, f"layer{i + 1}", tnn.Sequential(*blocks))
        self.n = len(layers)
        self.fc = tnn.Linear(cin, num_classes) if num_classes else tnn.Identity()

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        for i in range(self.n):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.fc(x.mean(dim=(2, 3)))


def perturb_bn(module, seed):
    """Non-trivial γ, β and running statistics, so eval mode tests something."""
    rng = np.random.default_rng(seed)
    for m in module.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            c = m.num_features
            if m.affine:
                assign(m.weight, rng.uniform(0.5, 1.5, c))
                if m.bias is not None:
                    assign(m.bias, rng.normal(0, 0.3, c))
            assign(m.running_mean, rng.normal(0, 0.3, c))
            assign(m.running_var, rng.uniform(0.5, 2.0, c))


@pytest.mark.parametrize("cin,cout,stride", [(3, 3, 1), (3, 5, 2)])
@pytest.mark.parametrize("train", [True, False])
def test_basic_block_matches_torch(cin, cout, stride, train):
    ours = nn.BasicBlock(cin, cout, stride, generator=0).double()
    perturb_bn(ours, 1)
    theirs = TorchBasicBlock(cin, cout, stride).double()
    theirs.load_state_dict(to_torch_state(ours.state_dict()))
    x = np.random.default_rng(2).standard_normal((3, cin, 6, 6))
    check_same_pass(ours, theirs, x, train)


@pytest.mark.parametrize("train", [True, False])
def test_small_resnet_matches_torch(train):
    ours = nn.ResNet(nn.BasicBlock, (2, 1, 1), (4, 6, 8), num_classes=3, generator=0).double()
    perturb_bn(ours, 3)
    theirs = TorchCifarResNet((2, 1, 1), (4, 6, 8), num_classes=3).double()
    theirs.load_state_dict(to_torch_state(ours.state_dict()))
    x = np.random.default_rng(4).standard_normal((4, 3, 8, 8))
    check_same_pass(ours, theirs, x, train)
    # a second training step's statistics agree as well (momentum update of running stats)
    check_same_pass(ours, theirs, x * 0.5 + 0.1, train, seed=1)


def test_resnet_tiny_state_dict_loads_into_twin():
    ours = nn.resnet_tiny(width=4, generator=0).double()
    theirs = TorchCifarResNet((1, 1, 1, 1), (4, 8, 16, 32)).double()
    missing, unexpected = theirs.load_state_dict(to_torch_state(ours.state_dict()), strict=True)
    assert not missing and not unexpected
    # and back: torch's state_dict (tensors) loads into npjem as is
    ours2 = nn.resnet_tiny(width=4, generator=9).double()
    ours2.load_state_dict(theirs.state_dict())
    x = np.random.default_rng(5).standard_normal((2, 3, 8, 8))
    ours.eval(), ours2.eval()
    xo = Tensor(x, device=DEVICE)
    np.testing.assert_array_equal(ours(xo).numpy(), ours2(xo).numpy())


# ============================================================================ ConvNet + SimCLR head (the benchmark's twin)

@pytest.mark.parametrize("train", [True, False])
def test_convnet_and_simclr_head_match_torch(train):
    backbone = nn.ConvNet(3, widths=(4, 6, 8), strides=(1, 2, 2), generator=0)
    head = nn.SimCLRProjectionHead(8, 8, 5, num_layers=2, generator=1)
    ours = nn.Sequential(backbone, head).double()
    perturb_bn(ours, 6)
    layers, c = [], 3
    for w, s in zip((4, 6, 8), (1, 2, 2)):
        layers += [tnn.Conv2d(c, w, 3, s, 1, bias=False), tnn.BatchNorm2d(w), tnn.ReLU()]
        c = w

    class Backbone(tnn.Module):
        def __init__(self):
            super().__init__()
            self.features = tnn.Sequential(*layers)

        def forward(self, x):
            return self.features(x).mean(dim=(2, 3))

    class Head(tnn.Module):
        def __init__(self):
            super().__init__()
            self.layers = tnn.Sequential(tnn.Linear(8, 8, bias=False), tnn.BatchNorm1d(8), tnn.ReLU(),
                                         tnn.Linear(8, 5))

        def forward(self, x):
            return self.layers(x)

    theirs = tnn.Sequential(Backbone(), Head()).double()
    theirs.load_state_dict(to_torch_state(ours.state_dict()))
    check_same_pass(ours, theirs, np.random.default_rng(7).standard_normal((5, 3, 8, 8)), train)


# ============================================================================ ViT twin

class TorchBlock(tnn.Module):
    def __init__(self, d, heads, hidden):
        super().__init__()
        self.norm1 = tnn.LayerNorm(d, eps=1e-6)
        self.attn = tnn.MultiheadAttention(d, heads, batch_first=True)
        self.norm2 = tnn.LayerNorm(d, eps=1e-6)
        self.mlp = tnn.Module()
        self.mlp.fc1, self.mlp.fc2 = tnn.Linear(d, hidden), tnn.Linear(hidden, d)

    def forward(self, x):
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp.fc2(tnn.functional.gelu(self.mlp.fc1(self.norm2(x))))


class TorchViT(tnn.Module):
    def __init__(self, img, patch, d, depth, heads, hidden):
        super().__init__()
        n = (img // patch) ** 2
        self.patch_embed = tnn.Module()
        self.patch_embed.proj = tnn.Conv2d(3, d, patch, patch)
        self.cls_token = tnn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = tnn.Parameter(torch.zeros(1, n + 1, d))
        self.mask_token = tnn.Parameter(torch.zeros(1, 1, d))
        self.blocks = tnn.ModuleList([TorchBlock(d, heads, hidden) for _ in range(depth)])
        self.norm = tnn.LayerNorm(d, eps=1e-6)

    def forward(self, x, mask=None):
        t = self.patch_embed.proj(x).flatten(2).transpose(1, 2)
        if mask is not None:
            w = mask.unsqueeze(-1).type_as(t)
            t = t * (1 - w) + self.mask_token * w       # BEiT's formulation
        t = torch.cat([self.cls_token.expand(t.shape[0], -1, -1), t], 1) + self.pos_embed
        for b in self.blocks:
            t = b(t)
        return self.norm(t)[:, 0]


def test_vit_matches_torch_with_mask():
    ours = nn.VisionTransformer(img_size=8, patch_size=4, embed_dim=8, depth=2, num_heads=2, mlp_ratio=2.0,
                                generator=0).double()
    theirs = TorchViT(8, 4, 8, 2, 2, 16).double()
    theirs.load_state_dict(to_torch_state(ours.state_dict()))
    x = np.random.default_rng(8).standard_normal((3, 3, 8, 8))
    mask = np.zeros((3, 4), bool)
    mask[0, 1] = mask[2, [0, 3]] = True

    class WithMask:
        def __init__(self, m, mk):
            self.m, self.mk = m, mk

        def __call__(self, x):
            return self.m(x, self.mk)

        def __getattr__(self, name):
            return getattr(self.m, name)

    check_same_pass(WithMask(ours, dev(mask)), WithMask(theirs, torch.from_numpy(mask)), x, True)


# ============================================================================ heads

def test_dino_head_matches_torch_weight_norm():
    ours = nn.DINOProjectionHead(6, 10, 4, 7, norm_last_layer=False, generator=0).double()
    rng = np.random.default_rng(9)
    assign(ours.last_layer.weight_g, rng.uniform(0.5, 2.0, (7, 1)))

    class TorchDINOHead(tnn.Module):
        def __init__(self):
            super().__init__()
            self.mlp = tnn.Sequential(tnn.Linear(6, 10), tnn.GELU(), tnn.Linear(10, 10), tnn.GELU(), tnn.Linear(10, 4))
            self.last_layer = tnn.Module()
            self.last_layer.weight_g = tnn.Parameter(torch.ones(7, 1))
            self.last_layer.weight_v = tnn.Parameter(torch.ones(7, 4))

        def forward(self, x):
            z = tnn.functional.normalize(self.mlp(x), dim=-1, p=2)
            ll = self.last_layer
            w = torch._weight_norm(ll.weight_v, ll.weight_g, 0)   # what nn.utils.weight_norm computes
            return z @ w.T

    theirs = TorchDINOHead().double()
    theirs.load_state_dict(to_torch_state(ours.state_dict()))
    check_same_pass(ours, theirs, rng.standard_normal((5, 6)), True)


@pytest.mark.parametrize("train", [True, False])
def test_simsiam_and_simclr_v2_heads_match_torch(train):
    ss = nn.SimSiamProjectionHead(4, 6, 5, generator=0).double()
    perturb_bn(ss, 10)
    t_ss = tnn.Sequential(tnn.Linear(4, 6, bias=False), tnn.BatchNorm1d(6), tnn.ReLU(),
                          tnn.Linear(6, 6, bias=False), tnn.BatchNorm1d(6), tnn.ReLU(),
                          tnn.Linear(6, 5, bias=False), tnn.BatchNorm1d(5, affine=False)).double()
    t_ss.load_state_dict({k.removeprefix("layers."): v for k, v in to_torch_state(ss.state_dict()).items()})
    x = np.random.default_rng(11).standard_normal((6, 4))
    check_same_pass(ss.layers, t_ss, x, train)

    v2 = nn.SimCLRProjectionHead(4, 4, 3, num_layers=3, last_batch_norm=True, generator=0).double()
    perturb_bn(v2, 12)

    class ScaleOnlyBN(tnn.BatchNorm1d):
        def __init__(self, c):
            super().__init__(c)
            del self.bias
            self.register_parameter("bias", None)

    t_v2 = tnn.Sequential(tnn.Linear(4, 4, bias=False), tnn.BatchNorm1d(4), tnn.ReLU(),
                          tnn.Linear(4, 4, bias=False), tnn.BatchNorm1d(4), tnn.ReLU(),
                          tnn.Linear(4, 3, bias=False), ScaleOnlyBN(3)).double()
    t_v2.load_state_dict({k.removeprefix("layers."): v for k, v in to_torch_state(v2.state_dict()).items()})
    check_same_pass(v2.layers, t_v2, x, train)
