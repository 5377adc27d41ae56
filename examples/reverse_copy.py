"""Train an encoder-decoder transformer to reverse sequences: the minitx template for seq2seq.

    python examples/reverse_copy.py                 # CPU, defaults reach >= 99% exact match
    python examples/reverse_copy.py --device gpu    # the same on a CUDA GPU (needs CuPy)
    python examples/reverse_copy.py --save ckpt.npz # checkpoint at each evaluation and on Ctrl-C
    python examples/reverse_copy.py --resume ckpt.npz

Task: the source is a random sequence of symbols with a random length (padded,
so masks matter); the target is BOS + the source reversed + EOS.  The model is
trained with teacher forcing and evaluated by greedy generation on a fixed
held-out set: a sequence counts as right only when every token up to EOS is.
"""
import argparse
import math
import os
import signal
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import minitx  # noqa: E402
from minitx import nn, optim  # noqa: E402

PAD, BOS, EOS = 0, 1, 2
SPECIAL = 3


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--device", default="cpu", help="'cpu' or 'gpu'")
    p.add_argument("--symbols", type=int, default=16, help="number of distinct source symbols")
    p.add_argument("--seq-len", type=int, default=12, help="longest source sequence")
    p.add_argument("--min-len", type=int, default=None, help="shortest source sequence (default seq_len // 2)")
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--depth", type=int, default=2, help="layers in the encoder and in the decoder")
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--dim-head", type=int, default=16)
    p.add_argument("--steps", type=int, default=600, help="maximum number of training steps (the cosine schedule spans them)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate")
    p.add_argument("--warmup", type=int, default=100, help="linear warmup steps before cosine decay")
    p.add_argument("--clip", type=float, default=1.0, help="gradient norm clipping (0 = off)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--eval-size", type=int, default=1000, help="held-out sequences")
    p.add_argument("--target", type=float, default=0.995, help="stop early once exact match reaches this")
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--save", default=None, help="checkpoint path written at each evaluation, at the end and on Ctrl-C")
    p.add_argument("--resume", default=None, help="checkpoint to continue from")
    return p.parse_args(argv)


def make_batch(gen, n, seq_len, min_len, symbols):
    """Random sources and their reversals: src (n, S) int, tgt (n, S + 2) int, mask (n, S) bool."""
    lens = gen.integers(min_len, seq_len + 1, size=n)                    # (n,)
    pos = np.arange(seq_len)
    mask = pos[None, :] < lens[:, None]                                  # (n, S)
    src = np.where(mask, gen.integers(SPECIAL, SPECIAL + symbols, size=(n, seq_len)), PAD)
    rev_idx = np.clip(lens[:, None] - 1 - pos[None, :], 0, seq_len - 1)  # source index of tgt[1 + i]
    body = np.where(mask, np.take_along_axis(src, rev_idx, axis=1), PAD)
    tgt = np.full((n, seq_len + 2), PAD)
    tgt[:, 0] = BOS
    tgt[:, 1:-1] = body
    tgt[np.arange(n), lens + 1] = EOS
    return src, tgt, mask


def build_model(args):
    vocab = SPECIAL + args.symbols
    return nn.XTransformer(
        dim=args.dim, tie_token_emb=True, pad_value=PAD, ignore_index=-100,
        enc_num_tokens=vocab, enc_depth=args.depth, enc_heads=args.heads, enc_dim_head=args.dim_head,
        enc_max_seq_len=args.seq_len,
        dec_num_tokens=vocab, dec_depth=args.depth, dec_heads=args.heads, dec_dim_head=args.dim_head,
        dec_max_seq_len=args.seq_len + 2)


def exact_match(model, src, tgt, mask, batch=500):
    """Fraction of sequences whose greedy decoding equals the target up to EOS."""
    right = 0
    for i in range(0, len(src), batch):
        s, t, m = src[i:i + batch], tgt[i:i + batch], mask[i:i + batch]
        out = model.generate(s, np.full((len(s), 1), BOS), t.shape[1] - 1, mask=m,
                             temperature=0.0, eos_token=EOS)
        out = minitx.backend.to_numpy(out)
        ref = t[:, 1:]
        right += int(((out == ref) | (ref == PAD)).all(axis=1).sum())
    return right / len(src), out, ref


def show(tokens):
    return " ".join(str(int(t) - SPECIAL) for t in tokens if t >= SPECIAL)


def main(argv=None):
    args = parse_args(argv)
    args.min_len = args.min_len or max(1, args.seq_len // 2)
    minitx.manual_seed(args.seed)
    data_rng = np.random.default_rng(args.seed)
    eval_src, eval_tgt, eval_mask = make_batch(np.random.default_rng(10_000 + args.seed), args.eval_size,
                                               args.seq_len, args.min_len, args.symbols)
    model = build_model(args).to(args.device)
    opt = optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    sched = optim.WarmupCosine(opt, warmup_steps=args.warmup, total_steps=args.steps, min_lr_ratio=0.05)
    step = 0
    if args.resume:
        info = minitx.load_checkpoint(args.resume, model, opt, sched)
        step = info["step"]
        data_rng.bit_generator.state = info["extra"]["data_rng"]
        print(f"resumed from {args.resume} at step {step}")
    print(f"model: {model.num_params:,} parameters on {args.device}; task: reverse {args.min_len}-"
          f"{args.seq_len} symbols of {args.symbols}; {args.steps} steps max, batch {args.batch_size}")

    def save(path):
        minitx.save_checkpoint(path, model, opt, sched, step=step,
                               extra={"data_rng": data_rng.bit_generator.state, "args": vars(args)})

    interrupted = []
    signal.signal(signal.SIGINT, lambda *_: interrupted.append(True))
    t0 = time.perf_counter()
    t_log, tokens, acc, loss = t0, 0, 0.0, None
    start_step = step
    while step < args.steps and not interrupted:
        src, tgt, mask = make_batch(data_rng, args.batch_size, args.seq_len, args.min_len, args.symbols)
        tgt = np.where(tgt == PAD, -100, tgt)                         # padding is left out of the loss
        loss = model(src, tgt, mask=mask)
        opt.zero_grad()
        loss.backward()
        if args.clip:
            optim.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        sched.step()
        step += 1
        tokens += int(mask.sum() + (tgt[:, 1:] != -100).sum())
        if step % args.log_every == 0:
            now = time.perf_counter()
            rate = (step - start_step) / (now - t0)
            eta = (args.steps - step) / rate
            print(f"step {step:5d}  loss {loss.item():.4f}  lr {sched.get_last_lr()[0]:.2e}  "
                  f"{tokens / (now - t_log):,.0f} tok/s  eta {eta:.0f}s", flush=True)
            t_log, tokens = now, 0
        if step % args.eval_every == 0 or step == args.steps:
            acc, out, ref = exact_match(model, eval_src, eval_tgt, eval_mask)
            print(f"eval  step {step:5d}  exact match {acc:.3f} on {args.eval_size} held-out sequences")
            for i in range(2):
                print(f"   src  {show(eval_src[-1 - i][eval_mask[-1 - i]])}\n   pred {show(out[-1 - i])}")
            if args.save:
                save(args.save)
            if acc >= args.target:
                break
    if interrupted:
        print(f"interrupted at step {step}")
        if args.save:
            save(args.save)
            print(f"saved {args.save}; continue with --resume {args.save}")
        return 130
    if acc < args.target or step % args.eval_every:
        acc, _, _ = exact_match(model, eval_src, eval_tgt, eval_mask)
    wall = time.perf_counter() - t0
    print(f"summary: steps {step}  wall {wall:.1f}s  final loss {loss.item() if loss is not None else float('nan'):.4f}  "
          f"exact match {acc * 100:.1f}% on {args.eval_size} held-out sequences  device {args.device}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
