"""Backbones, attention and heads: shapes, parameter counts, modes, masks and gradients (float64)."""
import numpy as np
import pytest

import npjem
from npjem import backend, nn

F64 = np.float64


def images(n, c=3, h=8, w=8, seed=0, dtype=F64):
    return np.random.default_rng(seed).standard_normal((n, c, h, w)).astype(dtype)


def n_params(m):
    return sum(p.size for p in m.parameters())


def with_params(module, names, fn):
    """A function of (x, *params) that runs ``fn(module, x)`` with ``module``'s parameters
    ``names`` replaced by the given Tensors (so gradcheck can vary them)."""
    def call(x, *ps):
        saved = []
        for name, p in zip(names, ps):
            owner, _, leaf = name.rpartition(".")
            m = module.get_submodule(owner)
            saved.append((m, leaf, m._parameters[leaf]))
            m._parameters[leaf] = p
        try:
            return fn(module, x)
        finally:
            for m, leaf, old in saved:
                m._parameters[leaf] = old
    return call


def param_arrays(module, names):
    sd = dict(module.named_parameters())
    return [npjem.tensor(sd[n].data.astype(F64), requires_grad=True) for n in names]


# ============================================================================ shapes and names

def test_convnet_shapes_and_count():
    m = nn.ConvNet(3, widths=(4, 6, 8), strides=(1, 2, 2), generator=0)
    x = images(2)
    f = m.forward_features(npjem.tensor(x.astype(np.float32)))
    assert f.shape == (2, 8) and m.num_features == 8
    assert m(npjem.tensor(x.astype(np.float32))).shape == (2, 8)  # no classifier: fc is the identity
    # conv k×k without bias + BN (γ, β) per block
    expected = sum(cin * cout * 9 + 2 * cout for cin, cout in [(3, 4), (4, 6), (6, 8)])
    assert n_params(m) == expected
    c = nn.ConvNet(3, widths=(4, 6, 8), strides=(1, 2, 2), num_classes=5, generator=0)
    assert c(npjem.tensor(x.astype(np.float32))).shape == (2, 5)
    assert n_params(c) == expected + 8 * 5 + 5
    nb = nn.ConvNet(1, widths=(4,), strides=(2,), batch_norm=False, generator=0)
    assert n_params(nb) == 1 * 4 * 9 + 4
    assert nb(npjem.tensor(images(2, c=1).astype(np.float32))).shape == (2, 4)


def test_convnet_rejects_bad_arguments():
    with pytest.raises(ValueError, match="strides"):
        nn.ConvNet(3, widths=(4, 8), strides=(1, 2, 2))
    with pytest.raises(ValueError, match="widths"):
        nn.ConvNet(3, widths=(4, 0), strides=(1, 2))
    with pytest.raises(ValueError, match="in_channels"):
        nn.ConvNet(3, widths=(4,), strides=(1,))(npjem.tensor(images(2, c=1)))
    with pytest.raises(ValueError, match="N, C, H, W"):
        nn.ConvNet(3, widths=(4,), strides=(1,))(npjem.tensor(np.zeros((3, 8, 8))))


@pytest.mark.parametrize("widths", [(8,), (8, 16), (4, 6, 8), (4, 4, 6, 8, 8)])
def test_convnet_default_strides_follow_widths(widths):
    m = nn.ConvNet(3, widths=widths, generator=0)
    assert m.strides == (1,) + (2,) * (len(widths) - 1)
    convs = [layer for layer in m.features if isinstance(layer, nn.Conv2d)]
    assert [c.stride for c in convs] == [(s, s) for s in m.strides]
    x = npjem.tensor(images(2, h=16, w=16).astype(np.float32))
    assert m(x).shape == (2, widths[-1])


def basic_block_params(cin, cout, stride):
    n = cin * cout * 9 + 2 * cout + cout * cout * 9 + 2 * cout
    if stride != 1 or cin != cout:
        n += cin * cout + 2 * cout
    return n


def test_resnet_tiny_shapes_count_and_names():
    m = nn.resnet_tiny(width=4, generator=0)
    w = (4, 8, 16, 32)
    expected = 3 * 4 * 9 + 2 * 4 + basic_block_params(4, 4, 1) + sum(
        basic_block_params(a, b, 2) for a, b in zip(w[:-1], w[1:]))
    assert n_params(m) == expected
    assert m.num_features == 32
    x = npjem.tensor(images(2, h=8, w=8).astype(np.float32))
    assert m(x).shape == (2, 32)
    keys = list(m.state_dict())
    # torchvision's names and order
    assert keys[:7] == ["conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var",
                        "bn1.num_batches_tracked", "layer1.0.conv1.weight"]
    assert "layer1.0.downsample.0.weight" not in keys
    assert {"layer2.0.downsample.0.weight", "layer2.0.downsample.1.weight", "layer2.0.downsample.1.running_var",
            "layer4.0.bn2.bias"} <= set(keys)
    assert not any(k.startswith("fc") for k in keys)
    clf = nn.resnet_tiny(width=4, num_classes=3, generator=0)
    assert clf(x).shape == (2, 3) and "fc.weight" in clf.state_dict()


def test_resnet18_and_bottleneck_shapes():
    m = nn.resnet18(width=2, generator=0)
    assert len(m.layer3) == 2 and m.num_features == 16
    assert m(npjem.tensor(images(2, h=8, w=8).astype(np.float32))).shape == (2, 16)
    r50 = nn.resnet50(width=2, generator=0)
    assert r50.num_features == 64 and len(r50.layer3) == 6
    assert r50(npjem.tensor(images(2, h=8, w=8).astype(np.float32))).shape == (2, 64)
    inet = nn.resnet_tiny(width=2, stem="imagenet", generator=0)
    assert inet.conv1.kernel_size == (7, 7) and isinstance(inet.maxpool, nn.MaxPool2d)
    assert inet(npjem.tensor(images(2, h=32, w=32).astype(np.float32))).shape == (2, 16)
    with pytest.raises(ValueError, match="stem"):
        nn.ResNet(stem="tiny")
    with pytest.raises(ValueError, match="widths"):
        nn.ResNet(layers=(1, 1), widths=(4, 8, 16))


def test_zero_init_residual_makes_blocks_identity_like():
    m = nn.resnet_tiny(width=4, zero_init_residual=True, generator=0)
    for i in range(1, 5):
        assert np.all(getattr(m, f"layer{i}")[0].bn2.weight.numpy() == 0)


def test_basic_block_shortcut_only_when_needed():
    assert nn.BasicBlock(4, 4, 1).downsample is None
    assert isinstance(nn.BasicBlock(4, 8, 1).downsample, nn.Sequential)
    assert isinstance(nn.BasicBlock(4, 4, 2).downsample, nn.Sequential)
    b = nn.BasicBlock(4, 8, 2, generator=0)
    assert b(npjem.tensor(images(2, c=4).astype(np.float32))).shape == (2, 8, 4, 4)


def tiny_vit(**kw):
    cfg = dict(img_size=8, patch_size=4, embed_dim=8, depth=2, num_heads=2, mlp_ratio=2.0, generator=0)
    cfg.update(kw)
    return nn.VisionTransformer(**cfg)


def test_vit_shapes_and_count():
    d, h, p, c, depth = 8, 16, 4, 3, 2
    m = tiny_vit()
    n_patch = (8 // p) ** 2
    per_block = 4 * d + (3 * d * d + 3 * d + d * d + d) + (d * h + h + h * d + d)
    expected = (c * p * p * d + d) + d + (n_patch + 1) * d + d + depth * per_block + 2 * d
    assert n_params(m) == expected
    x = npjem.tensor(images(3, dtype=np.float32))
    assert m(x).shape == (3, d) and m.num_features == d
    assert m.forward_features(x).shape == (3, n_patch + 1, d)
    assert tiny_vit(num_classes=5)(x).shape == (3, 5)
    keys = set(m.state_dict())
    assert {"cls_token", "pos_embed", "mask_token", "patch_embed.proj.weight", "blocks.1.attn.in_proj_weight",
            "blocks.1.attn.out_proj.bias", "blocks.0.mlp.fc1.weight", "blocks.0.norm2.bias", "norm.weight"} <= keys


def test_vit_rejects_bad_inputs():
    with pytest.raises(ValueError, match="divisible"):
        nn.VisionTransformer(img_size=10, patch_size=4)
    with pytest.raises(ValueError, match="divisible"):
        nn.VisionTransformer(img_size=8, patch_size=4, embed_dim=10, num_heads=4)
    m = tiny_vit().double()
    with pytest.raises(ValueError, match="img_size"):
        m(npjem.tensor(images(2, h=12, w=12)))
    with pytest.raises(ValueError, match="num_patches"):
        m(npjem.tensor(images(2)), mask=np.zeros((2, 5), bool))
    with pytest.raises(TypeError, match="boolean"):
        m(npjem.tensor(images(2)), mask=np.zeros((2, 4)))
    with pytest.raises(ValueError, match="block_output"):
        m.forward_features(npjem.tensor(images(2)), return_all_blocks=True, block_output="attn")


def test_vit_mask_replaces_exactly_the_masked_tokens():
    m = tiny_vit().double()
    x = images(2)
    mask = np.array([[True, False, False, True], [False, False, True, False]])
    plain = m.prepare_tokens(npjem.tensor(x)).numpy()
    masked = m.prepare_tokens(npjem.tensor(x), mask=mask).numpy()
    pos = m.pos_embed.numpy()[0]
    tok = m.mask_token.numpy()[0, 0]
    np.testing.assert_array_equal(masked[:, 0], plain[:, 0])          # CLS untouched
    for i in range(2):
        for j in range(4):
            if mask[i, j]:
                np.testing.assert_allclose(masked[i, 1 + j], tok + pos[1 + j], rtol=1e-14, atol=1e-14)
            else:
                np.testing.assert_array_equal(masked[i, 1 + j], plain[i, 1 + j])
    # The content of a masked patch cannot reach the output; an unmasked patch's can.
    x2 = x.copy()
    x2[0, :, :4, :4] += 5.0      # patch 0 of image 0: masked
    np.testing.assert_allclose(m(npjem.tensor(x2), mask=mask).numpy(), m(npjem.tensor(x), mask=mask).numpy(),
                               rtol=0, atol=0)
    x3 = x.copy()
    x3[0, :, :4, 4:] += 5.0      # patch 1 of image 0: visible
    assert not np.allclose(m(npjem.tensor(x3), mask=mask).numpy()[0], m(npjem.tensor(x), mask=mask).numpy()[0])
    # mask_token receives gradient only through masked positions (random weights: the sum of a
    # LayerNorm output over its features is constant, so a plain sum would have zero gradient)
    v = npjem.tensor(np.random.default_rng(1).standard_normal((2, 8)))
    out = (m(npjem.tensor(x), mask=mask) * v).sum()
    g, = npjem.grad(out, [m.mask_token])
    assert np.abs(g.numpy()).sum() > 0
    out = (m(npjem.tensor(x), mask=np.zeros((2, 4), bool)) * v).sum()
    g, = npjem.grad(out, [m.mask_token], allow_unused=True)
    assert g is None or np.all(g.numpy() == 0)


def test_vit_return_all_blocks():
    m = tiny_vit(depth=3).double()
    x = npjem.tensor(images(2))
    tokens, outs = m.forward_features(x, return_all_blocks=True)
    assert len(outs) == 3 and all(o.shape == (2, 5, 8) for o in outs)
    np.testing.assert_allclose(m.norm(outs[-1]).numpy(), tokens.numpy(), rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(m.blocks[1](outs[0]).numpy(), outs[1].numpy(), rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(tokens.numpy(), m.forward_features(x).numpy(), rtol=0, atol=0)
    _, ffn = m.forward_features(x, return_all_blocks=True, block_output="ffn")
    assert len(ffn) == 3
    # out_l = out_{l−1} + attn_l + ffn_l: the FFN branch is what the residual added last
    h = outs[0]
    a, _ = m.blocks[1].attn(m.blocks[1].norm1(h), need_weights=False)
    np.testing.assert_allclose((h + a + ffn[1]).numpy(), outs[1].numpy(), rtol=1e-13, atol=1e-13)


# ============================================================================ modes

def test_batchnorm_modes_in_a_backbone():
    m = nn.resnet_tiny(width=2, generator=0).double()
    x = images(4, seed=1)
    before = m.bn1.running_mean.numpy().copy()
    y_train = m(npjem.tensor(x)).numpy()
    assert not np.array_equal(before, m.bn1.running_mean.numpy())       # training updates the statistics
    assert int(m.bn1.num_batches_tracked.numpy()) == 1
    # train mode: a sample's output depends on the rest of the batch
    assert not np.allclose(m(npjem.tensor(x[:2])).numpy(), y_train[:2])
    m.eval()
    stats = m.bn1.running_mean.numpy().copy()
    y0 = m(npjem.tensor(x)).numpy()
    np.testing.assert_array_equal(stats, m.bn1.running_mean.numpy())    # eval leaves them alone
    np.testing.assert_allclose(m(npjem.tensor(x[:2])).numpy(), y0[:2], rtol=1e-12, atol=1e-12)
    assert not np.allclose(y0, y_train)


def test_dropout_in_vit_only_in_training():
    m = tiny_vit(drop_rate=0.5, attn_drop_rate=0.5).double()
    x = npjem.tensor(images(2))
    assert not np.allclose(m(x).numpy(), m(x).numpy())
    m.eval()
    np.testing.assert_array_equal(m(x).numpy(), m(x).numpy())


# ============================================================================ attention

def test_mha_shapes_weights_and_masks():
    rng = np.random.default_rng(0)
    mha = nn.MultiheadAttention(8, 2, generator=0).double()
    q = npjem.tensor(rng.standard_normal((2, 3, 8)))
    kv = npjem.tensor(rng.standard_normal((2, 5, 8)))
    out, w = mha(q, kv, kv)
    assert out.shape == (2, 3, 8) and w.shape == (2, 3, 5)
    np.testing.assert_allclose(w.numpy().sum(-1), 1.0, rtol=1e-13)
    _, wh = mha(q, kv, kv, average_attn_weights=False)
    assert wh.shape == (2, 2, 3, 5)
    assert mha(q, kv, kv, need_weights=False)[1] is None
    # key_padding_mask: ignored keys get zero weight, and their values cannot matter
    kpm = np.zeros((2, 5), bool)
    kpm[0, 3:] = True
    out1, w1 = mha(q, kv, kv, key_padding_mask=kpm)
    assert np.all(w1.numpy()[0, :, 3:] == 0)
    kv2 = kv.numpy().copy()
    kv2[0, 3:] += 10.0
    out2, _ = mha(q, npjem.tensor(kv2), npjem.tensor(kv2), key_padding_mask=kpm)
    np.testing.assert_allclose(out2.numpy()[0], out1.numpy()[0], rtol=1e-13, atol=1e-13)
    # causal self-attention: query i never sees key j > i
    _, wc = mha(q, is_causal=True)
    assert np.all(np.triu(wc.numpy()[0], k=1) == 0)
    # unbatched input
    o, w = mha(npjem.tensor(q.numpy()[0]))
    assert o.shape == (3, 8) and w.shape == (3, 3)
    # seq-first layout
    sf = nn.MultiheadAttention(8, 2, batch_first=False, generator=0).double()
    sf.load_state_dict(mha.state_dict())
    o_sf, _ = sf(npjem.tensor(q.numpy().transpose(1, 0, 2)))
    np.testing.assert_allclose(o_sf.numpy().transpose(1, 0, 2), mha(q)[0].numpy(), rtol=1e-13, atol=1e-13)


def test_mha_rejects_bad_inputs():
    with pytest.raises(ValueError, match="divisible"):
        nn.MultiheadAttention(6, 4)
    mha = nn.MultiheadAttention(4, 2)
    with pytest.raises(ValueError, match="embed_dim"):
        mha(npjem.tensor(np.zeros((2, 3, 5), np.float32)))
    with pytest.raises(ValueError, match="attn_mask"):
        mha(npjem.tensor(np.zeros((2, 3, 4), np.float32)), attn_mask=np.zeros((2, 2), bool))
    with pytest.raises(ValueError, match="key_padding_mask"):
        mha(npjem.tensor(np.zeros((2, 3, 4), np.float32)), key_padding_mask=np.zeros((2, 4), bool))
    with pytest.raises(TypeError, match="key_padding_mask"):
        mha(npjem.tensor(np.zeros((2, 3, 4), np.float32)), key_padding_mask=np.zeros((2, 3), np.int64))


# ============================================================================ heads

def test_projection_head_layouts_and_counts():
    h = nn.SimCLRProjectionHead(6, 10, 4, num_layers=3)
    # Linear without bias before each BN, last Linear with bias
    assert n_params(h) == 6 * 10 + 20 + 10 * 10 + 20 + 10 * 4 + 4
    assert h(npjem.tensor(np.ones((3, 6), np.float32) + np.arange(3, dtype=np.float32)[:, None])).shape == (3, 4)
    v1 = nn.SimCLRProjectionHead(6, 10, 4, batch_norm=False)
    assert n_params(v1) == 6 * 10 + 10 + 10 * 4 + 4
    v2 = nn.SimCLRProjectionHead(6, 6, 4, num_layers=3, last_batch_norm=True)
    keys = list(v2.state_dict())
    assert "layers.7.weight" in keys and "layers.7.bias" not in keys and "layers.6.bias" not in keys
    assert n_params(v2) == 6 * 6 + 12 + 6 * 6 + 12 + 6 * 4 + 4
    assert n_params(nn.MoCoProjectionHead(6, 10, 4)) == 6 * 10 + 10 + 10 * 4 + 4
    assert n_params(nn.BYOLProjectionHead(6, 10, 4)) == 6 * 10 + 20 + 10 * 4 + 4
    assert n_params(nn.BYOLPredictionHead(4, 10, 4)) == 4 * 10 + 20 + 10 * 4 + 4
    ss = nn.SimSiamProjectionHead(6, 10, 4)
    assert n_params(ss) == 6 * 10 + 20 + 10 * 10 + 20 + 10 * 4      # last BN affine=False
    assert ss.layers[-1].affine is False
    assert n_params(nn.SimSiamPredictionHead(4, 2, 4)) == 4 * 2 + 4 + 2 * 4 + 4
    assert n_params(nn.VICRegProjectionHead(6, 10, 8)) == 6 * 10 + 20 + 10 * 10 + 20 + 10 * 8 + 8
    assert n_params(nn.VICRegProjectionHead(6, 10, 8, num_layers=2)) == 6 * 10 + 20 + 10 * 8 + 8
    assert n_params(nn.BarlowTwinsProjectionHead(6, 10, 8)) == 6 * 10 + 20 + 10 * 10 + 20 + 10 * 8 + 8


def test_generic_projection_head():
    bn = nn.BatchNorm1d(5, affine=False)
    h = nn.ProjectionHead([(4, 5, bn, "gelu"), (5, 3, None, None, False)])
    assert h.layers[1] is bn and isinstance(h.layers[2], nn.GELU)
    assert h.layers[0].bias is None and h.layers[3].bias is None
    with pytest.raises(ValueError, match="in_features"):
        nn.ProjectionHead([(4, 5, None, None), (6, 3, None, None)])
    with pytest.raises(ValueError, match="activation"):
        nn.ProjectionHead([(4, 5, None, "swish")])
    with pytest.raises(ValueError, match="blocks"):
        nn.ProjectionHead([])


def test_dino_head():
    h = nn.DINOProjectionHead(6, 10, 4, 7, generator=0).double()
    assert list(h.state_dict()) == ["mlp.0.weight", "mlp.0.bias", "mlp.2.weight", "mlp.2.bias", "mlp.4.weight",
                                    "mlp.4.bias", "last_layer.weight_g", "last_layer.weight_v"]
    assert n_params(h) == 6 * 10 + 10 + 10 * 10 + 10 + 10 * 4 + 4 + 7 + 7 * 4
    assert not h.last_layer.weight_g.requires_grad
    np.testing.assert_allclose(np.linalg.norm(h.last_layer.weight.numpy(), axis=1), 1.0, rtol=1e-14)
    x = npjem.tensor(np.random.default_rng(0).standard_normal((3, 6)))
    y = h(x)
    assert y.shape == (3, 7)
    # output = W u with unit rows and unit u: every logit lies in [−1, 1]
    assert np.all(np.abs(y.numpy()) <= 1 + 1e-12)
    # the output is invariant to the scale of v (weight normalisation)
    h.last_layer.weight_v.data *= 3.0
    np.testing.assert_allclose(h(x).numpy(), y.numpy(), rtol=1e-13)
    # freezing the last layer drops its gradients during the first epochs only
    f = nn.DINOProjectionHead(6, 10, 4, 7, norm_last_layer=False, freeze_last_layer=1, generator=0)
    assert f.last_layer.weight_g.requires_grad
    f(npjem.tensor(np.ones((2, 6), np.float32))).sum().backward()
    f.cancel_last_layer_gradients(1)
    assert f.last_layer.weight_v.grad is not None
    f.cancel_last_layer_gradients(0)
    assert f.last_layer.weight_v.grad is None and f.last_layer.weight_g.grad is None
    assert f.mlp[0].weight.grad is not None


# ============================================================================ gradients (float64)

def test_gradcheck_basic_block_input_and_params():
    b = nn.BasicBlock(2, 3, stride=2, generator=0).double()
    x = npjem.tensor(images(2, c=2, h=4, w=4), requires_grad=True)
    names = ["conv1.weight", "bn1.weight", "conv2.weight", "bn2.bias", "downsample.0.weight", "downsample.1.weight"]
    fn = with_params(b, names, lambda m, x: m(x))
    assert npjem.gradcheck(fn, [x] + param_arrays(b, names))
    b.eval()
    b.bn1.running_var.data[...] = 0.7
    assert npjem.gradcheck(fn, [x] + param_arrays(b, names), mode="fast")


def test_gradgradcheck_basic_block():
    """Second order through conv, BN (batch statistics) and ReLU: what score matching with a
    ResNet energy differentiates."""
    b = nn.BasicBlock(2, 2, stride=1, generator=1).double()
    x = npjem.tensor(images(2, c=2, h=3, w=3, seed=4), requires_grad=True)
    names = ["conv1.weight", "bn2.weight"]
    fn = with_params(b, names, lambda m, x: m(x))
    assert npjem.gradgradcheck(fn, [x] + param_arrays(b, names), mode="fast", n_directions=6)


def test_gradcheck_mha():
    rng = np.random.default_rng(1)
    mha = nn.MultiheadAttention(4, 2, generator=0).double()
    q = npjem.tensor(rng.standard_normal((2, 3, 4)), requires_grad=True)
    kv = npjem.tensor(rng.standard_normal((2, 5, 4)), requires_grad=True)
    kpm = np.zeros((2, 5), bool)
    kpm[1, 4] = True
    names = ["in_proj_weight", "in_proj_bias", "out_proj.weight"]
    fn = with_params(mha, names, lambda m, x: m(x[0], x[1], x[1], key_padding_mask=kpm)[0])

    def cross(q, kv, *ps):
        return fn((q, kv), *ps)

    assert npjem.gradcheck(cross, [q, kv] + param_arrays(mha, names))
    self_fn = with_params(mha, names, lambda m, x: m(x, need_weights=False, is_causal=True)[0])
    assert npjem.gradcheck(self_fn, [q] + param_arrays(mha, names))
    # second order (the attention is built from Tensor operations only)
    assert npjem.gradgradcheck(lambda x, w: with_params(mha, ["in_proj_weight"], lambda m, x: m(x)[0])(x, w),
                               [q] + param_arrays(mha, ["in_proj_weight"]), mode="fast")


def test_gradcheck_vit_block_and_vit():
    blk = nn.Block(4, 2, mlp_ratio=2.0, generator=0).double()
    x = npjem.tensor(np.random.default_rng(2).standard_normal((2, 3, 4)), requires_grad=True)
    names = ["norm1.weight", "attn.in_proj_weight", "mlp.fc1.weight", "mlp.fc2.bias", "norm2.bias"]
    fn = with_params(blk, names, lambda m, x: m(x))
    assert npjem.gradcheck(fn, [x] + param_arrays(blk, names), mode="fast", n_directions=6)
    assert npjem.gradcheck(lambda x: blk(x), [x])
    vit = tiny_vit(depth=1, embed_dim=4, num_heads=2).double()
    xi = npjem.tensor(images(2, h=8, w=8), requires_grad=True)
    mask = np.array([[True, False, False, False], [False, False, True, True]])
    vnames = ["mask_token", "cls_token", "pos_embed", "patch_embed.proj.weight"]
    vfn = with_params(vit, vnames, lambda m, x: m(x, mask=mask))
    assert npjem.gradcheck(vfn, [xi] + param_arrays(vit, vnames), mode="fast", n_directions=6)


def test_gradcheck_heads():
    rng = np.random.default_rng(3)
    x = npjem.tensor(rng.standard_normal((4, 3)), requires_grad=True)
    h = nn.SimCLRProjectionHead(3, 5, 2, num_layers=3, last_batch_norm=True, generator=0).double()
    names = ["layers.0.weight", "layers.1.weight", "layers.4.bias", "layers.6.weight", "layers.7.weight"]
    assert npjem.gradcheck(with_params(h, names, lambda m, x: m(x)), [x] + param_arrays(h, names))
    d = nn.DINOProjectionHead(3, 5, 4, 6, norm_last_layer=False, generator=0).double()
    for lin in d.mlp:  # O(1) weights: DINO's σ = 0.02 makes ‖z‖ tiny and the L2 normalisation stiff
        if isinstance(lin, nn.Linear):
            lin.weight.data[...] = backend.to_device(rng.standard_normal(lin.weight.shape), lin.weight.device)
            lin.bias.data[...] = backend.to_device(rng.standard_normal(lin.bias.shape), lin.bias.device)
    dnames = ["mlp.0.weight", "mlp.4.bias", "last_layer.weight_g", "last_layer.weight_v"]
    assert npjem.gradcheck(with_params(d, dnames, lambda m, x: m(x)), [x] + param_arrays(d, dnames))
    s = nn.SimSiamProjectionHead(3, 5, 4, generator=0).double()
    assert npjem.gradcheck(lambda x: s(x), [x])


def test_gradcheck_convnet_fast():
    m = nn.ConvNet(2, widths=(3, 4), strides=(1, 2), num_classes=2, generator=0).double()
    x = npjem.tensor(images(3, c=2, h=6, w=6), requires_grad=True)
    names = ["features.0.weight", "features.1.weight", "features.3.weight", "fc.weight"]
    assert npjem.gradcheck(with_params(m, names, lambda m, x: m(x)), [x] + param_arrays(m, names), mode="fast")


# ============================================================================ reproducibility and devices

def test_seed_reproduces_weights_and_float32_default():
    a, b = nn.resnet_tiny(width=2, generator=5), nn.resnet_tiny(width=2, generator=5)
    c = nn.resnet_tiny(width=2, generator=6)
    host = backend.to_numpy
    for va, vb in zip(a.state_dict().values(), b.state_dict().values()):
        np.testing.assert_array_equal(host(va), host(vb))
    assert any(not np.array_equal(host(va), host(vc))
               for va, vc in zip(a.state_dict().values(), c.state_dict().values()))
    assert a.conv1.weight.dtype == np.float32
    v1, v2 = tiny_vit(generator=3), tiny_vit(generator=3)
    for va, vb in zip(v1.state_dict().values(), v2.state_dict().values()):
        np.testing.assert_array_equal(host(va), host(vb))


def test_state_dict_roundtrip_between_models():
    a, b = tiny_vit(generator=1), tiny_vit(generator=2)
    b.load_state_dict(a.state_dict())
    x = npjem.tensor(images(2).astype(np.float32))
    np.testing.assert_array_equal(a(x).numpy(), b(x).numpy())
