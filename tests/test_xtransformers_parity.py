"""minitx's XTransformer is x-transformers' XTransformer: same weights, same loss, same gradients.

Optional: skipped unless ``torch`` and ``x-transformers`` are installed
(``pip install torch==2.13.0 x-transformers==2.31.10``).
"""
import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")
x_transformers = pytest.importorskip("x_transformers")

import minitx  # noqa: E402
from minitx import nn  # noqa: E402

V, DIM = 11, 16


def their_name(name):
    """Map a minitx parameter name to x-transformers' name for the same tensor."""
    name = name.replace("token_emb.weight", "token_emb.emb.weight")
    m = re.match(r"(.*attn_layers\.layers)\.(\d+)\.(\w+)\.(.*)", name)
    if m:
        prefix, i, part, rest = m.groups()
        per_layer = 3 if prefix.startswith("decoder") else 2
        slot = {"attn_norm": 0, "attn": 0, "cross_norm": 1, "cross_attn": 1, "ff_norm": per_layer - 1,
                "ff": per_layer - 1}[part]
        idx = int(i) * per_layer + slot
        if part.endswith("norm"):
            return f"{prefix}.{idx}.0.0.gamma"
        if part == "ff":
            rest = rest.replace("proj_in.", "ff.0.0.").replace("proj_out.", "ff.2.")
        return f"{prefix}.{idx}.1.{rest}"
    return name.replace("final_norm.weight", "final_norm.gamma")


def their_value(theirs, name):
    """The value a minitx parameter must take to compute what x-transformers' ``name`` does.

    x-transformers' LayerNorm may store its gain with a unit offset (the
    effective gain is ``gamma + 1``); minitx stores the effective gain.
    """
    value = dict(theirs.named_parameters())[name].detach().numpy().copy()
    if name.endswith("gamma"):
        module = dict(theirs.named_modules())[name[: -len(".gamma")]]
        value += float(getattr(module, "unit_offset", 0.0))
    return value


def build_pair(depth, heads, dim_head, enc_len, dec_len):
    torch.manual_seed(0)
    theirs = x_transformers.XTransformer(
        dim=DIM, tie_token_emb=True, pad_value=0, ignore_index=-100,
        enc_num_tokens=V, enc_depth=depth, enc_heads=heads, enc_attn_dim_head=dim_head, enc_max_seq_len=enc_len,
        dec_num_tokens=V, dec_depth=depth, dec_heads=heads, dec_attn_dim_head=dim_head, dec_max_seq_len=dec_len,
    ).double()
    ours = nn.XTransformer(
        dim=DIM, tie_token_emb=True, pad_value=0, ignore_index=-100,
        enc_num_tokens=V, enc_depth=depth, enc_heads=heads, enc_dim_head=dim_head, enc_max_seq_len=enc_len,
        dec_num_tokens=V, dec_depth=depth, dec_heads=heads, dec_dim_head=dim_head, dec_max_seq_len=dec_len,
    ).double()
    for module in theirs.modules():
        # x-transformers computes attention softmax in float32 even in a float64 model;
        # make it float64 so the comparison can be tight
        if type(module).__name__ == "Attend":
            module.attn_fn = lambda sim, **kw: torch.softmax(sim, dim=-1)
    their_params = dict(theirs.named_parameters())
    with torch.no_grad():   # random gains too, so the norms' gradients are not trivially alike
        for name, p in their_params.items():
            if name.endswith("gamma"):
                p.copy_(1 + 0.1 * torch.randn_like(p))
    state = {n: their_value(theirs, their_name(n)) for n, _ in ours.named_parameters()}
    assert len(state) == len(their_params), "every x-transformers parameter has a minitx twin"
    ours.load_state_dict(state)
    return ours, theirs, their_params


@pytest.mark.parametrize("depth, heads, dim_head", [(1, 2, 8), (2, 4, 4)])
def test_same_loss_and_gradients_as_x_transformers(depth, heads, dim_head):
    ours, theirs, their_params = build_pair(depth, heads, dim_head, enc_len=7, dec_len=8)
    g = np.random.default_rng(0)
    B = 4
    src = g.integers(3, V, size=(B, 7))
    lens = np.array([7, 3, 5, 1])
    mask = np.arange(7)[None, :] < lens[:, None]
    src[~mask] = 0
    tgt = g.integers(3, V, size=(B, 8))
    tgt[:, 0] = 1
    tgt[1, 5:] = -100
    tgt[3, 3:] = -100

    loss_t = theirs(torch.tensor(src), torch.tensor(tgt), mask=torch.tensor(mask))
    loss_t.backward()
    loss_m = ours(src, tgt, mask=mask)
    loss_m.backward()

    assert loss_m.item() == pytest.approx(loss_t.item(), rel=1e-12, abs=1e-12)
    for name, p in ours.named_parameters():
        ref = their_params[their_name(name)].grad.numpy()
        np.testing.assert_allclose(p.grad.numpy(), ref, rtol=1e-9, atol=1e-12, err_msg=name)


def test_same_greedy_generation_as_x_transformers():
    ours, theirs, _ = build_pair(1, 2, 8, enc_len=6, dec_len=8)
    g = np.random.default_rng(1)
    src = g.integers(3, V, size=(3, 6))
    mask = np.arange(6)[None, :] < np.array([6, 2, 4])[:, None]
    start = np.ones((3, 1), dtype=np.int64)
    out_t = theirs.generate(torch.tensor(src), torch.tensor(start), 7, mask=torch.tensor(mask), temperature=0.0)
    out_m = ours.generate(src, start, 7, mask=mask, temperature=0.0)
    np.testing.assert_array_equal(minitx.backend.to_numpy(out_m), out_t.numpy())
