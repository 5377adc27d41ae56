"""Tests for minitx.nn.module: registration and dotted names, tied parameters,
train/eval, zero_grad, devices and dtypes, state dicts, hooks, repr and
constructor argument checks."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minitx
from minitx import backend
from minitx.nn import (Attention, Dropout, Embedding, FeedForward, LayerNorm, Linear, Module,
                       ModuleList, Parameter, SinusoidalPositionalEmbedding)


class Tiny(Module):
    """Embedding -> ModuleList of Linears -> LayerNorm, plus a root parameter."""

    def __init__(self, vocab=5, dim=3, out=2):
        super().__init__()
        self.embed = Embedding(vocab, dim)
        self.blocks = ModuleList([Linear(dim, dim), Linear(dim, out, bias=False)])
        self.norm = LayerNorm(out)
        self.drop = Dropout(0.5)
        self.scale = Parameter(np.full(1, 2.0, dtype=np.float32))

    def forward(self, ids):
        h = self.embed(ids)                     # (B, S, dim)
        for block in self.blocks:
            h = block(h)
        return self.drop(self.norm(h)) * self.scale


TINY_NAMES = ["scale", "embed.weight", "blocks.0.weight", "blocks.0.bias", "blocks.1.weight",
              "norm.weight", "norm.bias"]


class Tied(Module):
    """Two Linears sharing one weight, and one sub-module reachable twice."""

    def __init__(self):
        super().__init__()
        self.a = Linear(3, 3)
        self.b = Linear(3, 3)
        self.b.weight = self.a.weight
        self.again = self.a


def ids_on(device, shape=(2, 4), vocab=5, seed=0):
    ids = np.random.default_rng(seed).integers(0, vocab, size=shape)
    return minitx.tensor(ids, device=device)


def values(module):
    return {n: backend.to_numpy(p.data).copy() for n, p in module.named_parameters()}


# ------------------------------------------------------------ registration
def test_named_parameters_dotted_names_nested_and_module_list():
    m = Tiny()
    names = [n for n, _ in m.named_parameters()]
    assert sorted(names) == sorted(TINY_NAMES)
    assert len(names) == len(set(names))
    assert [id(p) for p in m.parameters()] == [id(p) for _, p in m.named_parameters()]
    assert m.blocks[1].weight is dict(m.named_parameters())["blocks.1.weight"]
    assert all(isinstance(p, Parameter) and p.requires_grad for p in m.parameters())


@given(st.integers(0, 5), st.booleans())
def test_module_list_names_follow_positions(n, bias):
    layers = ModuleList([Linear(2, 2, bias=bias) for _ in range(n)])
    names = [name for name, _ in layers.named_parameters()]
    expected = [f"{i}.{p}" for i in range(n) for p in (("weight", "bias") if bias else ("weight",))]
    assert sorted(names) == sorted(expected)
    assert len(layers) == n and list(layers) == [layers[i] for i in range(n)]
    assert layers.num_params == n * (4 + 2 * bias)


def test_shared_parameter_and_module_listed_once():
    m = Tied()
    names = [n for n, _ in m.named_parameters()]
    assert sorted(names) == ["a.bias", "a.weight", "b.bias"]
    assert m.num_params == 9 + 3 + 3
    assert len(m.parameters()) == 3
    assert list(m.state_dict()) == names
    assert sum(mod is m.a for mod in m.modules()) == 1


def test_assigning_none_or_deleting_unregisters():
    lin = Linear(3, 2)
    lin.bias = None
    assert [n for n, _ in lin.named_parameters()] == ["weight"]
    assert lin.bias is None
    m = Tiny()
    del m.norm
    assert not any(n.startswith("norm.") for n, _ in m.named_parameters())


def test_assigning_before_super_init_is_an_error():
    class Bad(Module):
        def __init__(self):
            self.lin = Linear(2, 2)

    with pytest.raises(AttributeError, match="super"):
        Bad()


def test_num_params():
    assert Linear(4, 5).num_params == 25
    assert Linear(4, 5, bias=False).num_params == 20
    assert LayerNorm(7, bias=False).num_params == 7
    assert Tiny(vocab=5, dim=3, out=2).num_params == 1 + 15 + 12 + 6 + 2 + 2
    assert Attention(8, heads=2, dim_head=3).num_params == 4 * 8 * 6
    assert Dropout(0.1).num_params == 0


# --------------------------------------------------------------- modes, grads
def test_train_eval_propagate_to_every_submodule(device):
    m = Tiny().to(device)
    assert m.training and all(mod.training for mod in m.modules())
    assert m.eval() is m
    assert not any(mod.training for mod in m.modules())
    ids = ids_on(device)
    a, b = m(ids), m(ids)                                       # dropout off: deterministic
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert m.train() is m
    assert all(mod.training for mod in m.modules())
    m.blocks.train(False)
    assert m.training and not m.blocks.training and not m.blocks[0].training


def test_zero_grad_and_requires_grad(device):
    m = Tiny().to(device)
    m(ids_on(device)).sum().backward()
    assert all(p.grad is not None for p in m.parameters())
    m.zero_grad()
    assert all(p.grad is None for p in m.parameters())
    m.requires_grad_(False)
    assert not any(p.requires_grad for p in m.parameters())
    assert not m(ids_on(device)).requires_grad
    m.requires_grad_(True)
    assert all(p.requires_grad for p in m.parameters())


# ------------------------------------------------------------ device, dtype
def test_to_device_round_trip_keeps_identity_and_values(device):
    m = Tiny()
    before = values(m)
    params = m.parameters()
    m.to(device)
    assert m.device == device
    assert all(p.device == device for p in m.parameters())
    m.to("cpu")
    assert m.device == "cpu"
    assert [id(p) for p in m.parameters()] == [id(p) for p in params]    # same objects
    after = values(m)
    for name in before:
        np.testing.assert_array_equal(after[name], before[name])


def test_to_moves_buffers(device):
    pos = SinusoidalPositionalEmbedding(4).to(device)
    assert backend.device_of(pos.inv_freq) == device
    assert pos(3).device == device


def test_double_and_float_cast_parameters_and_float_buffers(device):
    m = Tiny().to(device)
    m.register_buffer("counts", np.arange(3))
    m.register_buffer("table", np.zeros(3, dtype=np.float32))
    assert m.double() is m
    assert all(p.dtype == np.float64 for p in m.parameters())
    assert m.table.dtype == np.float64 and m.counts.dtype.kind == "i"   # integers untouched
    assert m(ids_on(device)).dtype == np.float64
    assert m.float() is m
    assert all(p.dtype == np.float32 for p in m.parameters())
    assert m.table.dtype == np.float32 and m.counts.dtype.kind == "i"
    assert m(ids_on(device)).dtype == np.float32


# --------------------------------------------------------------- state dict
def test_state_dict_round_trip(device):
    src, dst = Tiny().to(device), Tiny().to(device)
    src.eval(), dst.eval()
    state = src.state_dict()
    assert list(state) == [n for n, _ in src.named_parameters()]
    assert sorted(state) == sorted(TINY_NAMES)
    assert dst.load_state_dict(state) == ([], [])
    ids = ids_on(device)
    np.testing.assert_array_equal(dst(ids).numpy(), src(ids).numpy())
    # a copy, not an alias: changing the source afterwards leaves dst alone
    src.norm.weight.data[...] = 7.0
    assert not (dst.norm.weight.numpy() == 7.0).any()


@given(st.integers(1, 4), st.integers(1, 4))
def test_state_dict_round_trip_casts_dtype_and_accepts_tensors(dim, out):
    src = Tiny(dim=dim, out=out).double()
    dst = Tiny(dim=dim, out=out)                                      # float32
    dst.load_state_dict({k: minitx.tensor(v) for k, v in src.state_dict().items()})   # Tensors work too
    assert all(p.dtype == np.float32 for p in dst.parameters())
    for name, value in src.state_dict().items():
        np.testing.assert_allclose(dst.state_dict()[name], value, rtol=1e-6)


def test_strict_load_names_missing_and_unexpected_keys():
    m = Tiny()
    state = dict(Tiny().state_dict())
    del state["blocks.0.bias"]
    with pytest.raises(KeyError, match=r"blocks\.0\.bias"):
        m.load_state_dict(state)
    state = dict(Tiny().state_dict())
    state["blocks.2.weight"] = np.zeros((2, 2), dtype=np.float32)
    with pytest.raises(KeyError, match=r"blocks\.2\.weight"):
        m.load_state_dict(state)


def test_non_strict_load_reports_and_loads_the_rest():
    m = Tiny()
    src = Tiny()
    state = dict(src.state_dict())
    del state["norm.bias"]
    state["extra"] = np.zeros(1, dtype=np.float32)
    before = m.norm.bias.numpy().copy()
    missing, unexpected = m.load_state_dict(state, strict=False)
    assert missing == ["norm.bias"] and unexpected == ["extra"]
    np.testing.assert_array_equal(m.embed.weight.numpy(), src.embed.weight.numpy())
    np.testing.assert_array_equal(m.norm.bias.numpy(), before)


@pytest.mark.parametrize("strict", [True, False])
def test_shape_mismatch_raises_shape_error_naming_the_key(strict):
    m = Tiny()
    before = values(m)
    state = dict(Tiny().state_dict())
    state["blocks.1.weight"] = np.zeros((3, 3), dtype=np.float32)
    with pytest.raises(minitx.ShapeError, match=r"blocks\.1\.weight"):
        m.load_state_dict(state, strict=strict)
    after = values(m)                                             # nothing was loaded
    for name in before:
        np.testing.assert_array_equal(after[name], before[name])


# -------------------------------------------------------------- calling, repr
def test_forward_hooks_fire_replace_and_remove(device):
    lin = Linear(3, 2).to(device)
    calls = []
    handle = lin.register_forward_hook(lambda mod, inputs, out: calls.append((mod, inputs, out)))
    x = minitx.tensor(np.ones((1, 3)), device=device, dtype=np.float32)
    y = lin(x)
    assert len(calls) == 1
    mod, inputs, out = calls[0]
    assert mod is lin and inputs[0] is x and out is y
    replace = lin.register_forward_hook(lambda mod, inputs, out: out * 0.0)
    assert (lin(x).numpy() == 0).all() and len(calls) == 2
    replace.remove()
    handle.remove()
    handle.remove()                                               # removing twice is harmless
    np.testing.assert_array_equal(lin(x).numpy(), y.numpy())
    assert len(calls) == 2


def test_hook_on_submodule_fires_inside_parent(device):
    m = Tiny().to(device)
    seen = []
    m.blocks[0].register_forward_hook(lambda mod, inputs, out: seen.append(out.shape))
    m(ids_on(device, shape=(2, 4)))
    assert seen == [(2, 4, 3)]


def test_repr_contains_class_names_and_arguments():
    text = repr(Tiny())
    for word in ("Tiny", "Embedding", "ModuleList", "Linear", "LayerNorm", "Dropout",
                 "in_features=3", "(blocks)", "(0)", "p=0.5"):
        assert word in text, f"{word!r} missing from repr:\n{text}"
    assert "Attention" in repr(Attention(8, heads=2, dim_head=4))
    assert "heads=2" in repr(Attention(8, heads=2, dim_head=4))


@pytest.mark.parametrize("build", [
    lambda: Linear(4, 5, bais=False),
    lambda: Attention(8, head=2),
    lambda: LayerNorm(4, bias_=False),
    lambda: Embedding(3, 4, sdt=1.0),
    lambda: FeedForward(4, mul=2),
    lambda: Dropout(p=0.1, rate=0.2),
])
def test_unknown_constructor_keyword_is_a_type_error(build):
    with pytest.raises(TypeError):
        build()


def test_forward_must_be_defined():
    class NoForward(Module):
        pass

    with pytest.raises(NotImplementedError, match="NoForward"):
        NoForward()(1)
