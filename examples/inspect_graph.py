"""Look inside one training step: the graph of a tiny encoder-decoder, module by module.

    python examples/inspect_graph.py                       # writes inspect_graph.dot (+ .png with graphviz)
    python examples/inspect_graph.py --out step.dot --depth 4
    dot -Tsvg step.dot -o step.svg                         # render by hand with Graphviz

Builds a tiny XTransformer, runs one teacher-forced step under
``graph.trace(model)`` so every op remembers the module call that made it,
writes the graph collapsed to modules at dotted depth <= --depth as DOT (and a
PNG next to it when the ``graphviz`` package and the ``dot`` binary are
installed), prints it as a text tree, then runs backward and prints the
gradient norm of every parameter.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import minitx  # noqa: E402
from minitx import nn  # noqa: E402
from minitx.autograd import graph  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", default="inspect_graph.dot", help="where to write the DOT file")
    p.add_argument("--depth", type=int, default=2, help="collapse module calls at this dotted depth or above")
    p.add_argument("--layers", type=int, default=1, help="encoder and decoder depth")
    p.add_argument("--device", default="cpu", help="'cpu' or 'gpu'")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def build(layers, device, seed):
    """A tiny tied-embedding encoder-decoder and one batch: (model, src (2, 6), tgt (2, 7), mask)."""
    minitx.manual_seed(seed)
    model = nn.XTransformer(dim=16, tie_token_emb=True, enc_num_tokens=12, dec_num_tokens=12,
                            enc_max_seq_len=6, dec_max_seq_len=6, enc_depth=layers, dec_depth=layers,
                            enc_heads=2, dec_heads=2, enc_dim_head=8, dec_dim_head=8).to(device)
    rng = np.random.default_rng(seed)
    src = rng.integers(3, 12, (2, 6))
    tgt = np.concatenate([np.ones((2, 1), int), src[:, ::-1]], axis=1)    # BOS + reversed source
    mask = np.array([[True] * 6, [True] * 4 + [False] * 2])              # the second row is padded
    return model, src, tgt, mask


def main(argv=None):
    args = parse_args(argv)
    model, src, tgt, mask = build(args.layers, args.device, args.seed)
    with graph.trace(model):                                  # ops remember their module call
        loss = model(src, tgt, mask=mask)
    dot = graph.to_dot(loss, params=model, collapse_modules=True, collapse_depth=args.depth)
    with open(args.out, "w") as f:
        f.write(dot)
    print(f"wrote {args.out} ({dot.count('->')} edges)")
    png = os.path.splitext(args.out)[0] + ".png"
    try:
        graph.render(dot, png)
        print(f"wrote {png}")
    except (ImportError, RuntimeError) as e:                  # graphviz is optional
        print(f"no PNG: {str(e).splitlines()[0]}")
    print(f"\nloss {loss.item():.4f}; graph collapsed at depth {args.depth}:\n")
    print(graph.to_text(loss, params=model, collapse_modules=True, collapse_depth=args.depth))
    loss.backward()
    print("gradient norms:")
    width = max(len(n) for n, _ in model.named_parameters())
    for name, p in model.named_parameters():
        norm = 0.0 if p.grad is None else float(np.linalg.norm(p.grad.numpy()))
        print(f"  {name:<{width}}  {str(p.shape):<10} {norm:.4e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
