"""Train an encoder-decoder transformer to reverse sequences: the minitx template for seq2seq.

    python examples/reverse_copy.py                 # CPU, defaults reach >= 99% exact match
    python examples/reverse_copy.py --device gpu    # the same on a CUDA GPU (needs CuPy)
    python examples/reverse_copy.py --save ckpt.npz # checkpoint at each evaluation and on Ctrl-C
    python examples/reverse_copy.py --resume ckpt.npz --save ckpt.npz   # continue exactly where it stopped

Task: the source is a random sequence of symbols with a random length (padded,
so masks matter); the target is BOS + the source reversed + EOS.  The model is
trained with teacher forcing and evaluated by greedy generation on a fixed
held-out set: a sequence counts as right only when every token up to EOS is.

Fault tolerance: Ctrl-C (SIGINT) or SIGTERM ends the run after the current step
and, with --save, writes a checkpoint first (a second Ctrl-C stops at once).  A
checkpoint holds the model, the optimizer, the schedule position, the step and
the random state of the weights/dropout and of the data, so --resume continues
the same run: on the CPU an interrupted-and-resumed run computes exactly the
losses of an uninterrupted one.  A failed save (disk full ...) is reported and
training goes on; the previous checkpoint stays intact, because checkpoints are
written atomically.  --skip-nonfinite skips the update of any step whose loss or
gradient norm is NaN/Inf, and counts them.
"""
import argparse
import os
import signal
import sys
import threading
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
    p.add_argument("--seq-len", type=int, default=16, help="longest source sequence")
    p.add_argument("--min-len", type=int, default=None, help="shortest source sequence (default seq_len // 2)")
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--depth", type=int, default=2, help="layers in the encoder and in the decoder")
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--dim-head", type=int, default=32)
    p.add_argument("--steps", type=int, default=1000, help="maximum number of training steps (the cosine schedule spans them)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate")
    p.add_argument("--warmup", type=int, default=100, help="linear warmup steps before cosine decay")
    p.add_argument("--clip", type=float, default=1.0, help="gradient norm clipping (0 = off)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-every", type=int, default=200)
    p.add_argument("--eval-size", type=int, default=1000, help="held-out sequences")
    p.add_argument("--target", type=float, default=0.995, help="stop early once exact match reaches this")
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--dropout", type=float, default=0.0, help="attention and feed-forward dropout (encoder and decoder)")
    p.add_argument("--skip-nonfinite", action="store_true",
                   help="skip the update of a step whose loss or gradient norm is NaN/Inf (costs one host read per step)")
    p.add_argument("--save", default=None, help="checkpoint path written at each evaluation, at the end and on Ctrl-C")
    p.add_argument("--resume", default=None, help="checkpoint to continue from")
    p.add_argument("--stop-at", type=int, default=None,
                   help="end this run after this step, saving as on Ctrl-C (the schedule still spans --steps)")
    args = p.parse_args(argv)
    if not 0.0 <= args.dropout < 1.0:
        p.error(f"--dropout must be in [0, 1), got {args.dropout}")
    if not 0 <= args.warmup < args.steps:
        p.error(f"--warmup ({args.warmup}) must be >= 0 and smaller than --steps ({args.steps})")
    for name in ("steps", "batch_size", "seq_len", "symbols", "eval_every", "log_every", "eval_size"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    return args


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
        enc_max_seq_len=args.seq_len, enc_attn_dropout=args.dropout, enc_ff_dropout=args.dropout,
        dec_num_tokens=vocab, dec_depth=args.depth, dec_heads=args.heads, dec_dim_head=args.dim_head,
        dec_max_seq_len=args.seq_len + 2, dec_attn_dropout=args.dropout, dec_ff_dropout=args.dropout)


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


# options that may change between a run and its resumption without changing the run itself
_RUN_CONTROL = {"device", "eval_every", "eval_size", "target", "log_every", "save", "resume",
                "stop_at", "skip_nonfinite"}


def train(args):
    """Train as ``args`` say; returns a dict: step, losses (this run's, one per step),
    final_loss, exact_match, skipped, save_failures, interrupted (the signal) and exit_code."""
    args.min_len = args.min_len or max(1, args.seq_len // 2)
    minitx.manual_seed(args.seed)
    data_rng = np.random.default_rng(args.seed)
    eval_src, eval_tgt, eval_mask = make_batch(np.random.default_rng(10_000 + args.seed), args.eval_size,
                                               args.seq_len, args.min_len, args.symbols)
    model = build_model(args).to(args.device)
    params = model.parameters()
    opt = optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    sched = optim.WarmupCosine(opt, warmup_steps=args.warmup, total_steps=args.steps, min_lr_ratio=0.05)
    step, skipped, save_failures, last_save_ok = 0, 0, 0, True
    if args.resume:
        info = minitx.load_checkpoint(args.resume, model, opt, sched)     # also restores the RNG state
        step, extra = info["step"], info["extra"] or {}
        data_rng.bit_generator.state = extra["data_rng"]
        skipped = extra.get("skipped", 0)
        changed = [f"--{k.replace('_', '-')} {v} (was {extra['args'][k]})" for k, v in vars(args).items()
                   if k not in _RUN_CONTROL and k in extra.get("args", {}) and extra["args"][k] != v]
        if changed:
            print(f"note: resuming with different options: {', '.join(changed)}")
        print(f"resumed from {args.resume} at step {step}")
    print(f"model: {model.num_params:,} parameters on {args.device}; task: reverse {args.min_len}-"
          f"{args.seq_len} symbols of {args.symbols}; {args.steps} steps max, batch {args.batch_size}")

    def save(path):
        """Write a checkpoint atomically; on failure keep going (the previous file stays intact)."""
        nonlocal save_failures, last_save_ok
        try:
            minitx.save_checkpoint(path, model, opt, sched, step=step,
                                   extra={"data_rng": data_rng.bit_generator.state, "args": vars(args),
                                          "skipped": skipped})
            last_save_ok = True
        except OSError as e:
            save_failures, last_save_ok = save_failures + 1, False
            print(f"warning: could not save {path} at step {step} ({e}); the previous checkpoint is kept",
                  file=sys.stderr, flush=True)
        return last_save_ok

    stop = []                                   # the signal that asked to stop, if any

    def on_signal(signum, frame):
        stop.append(signum)
        signal.signal(signum, previous[signum])  # a second Ctrl-C stops at once
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        end = args.steps if args.stop_at is None else min(args.steps, args.stop_at)
        xp = minitx.backend.array_module(args.device)
        losses = xp.full(max(end - step, 0), np.nan, dtype=np.float32)   # read back once, at the end
        t0 = time.perf_counter()
        t_log, tokens, acc, loss, start_step = t0, 0, 0.0, None, step
        evaluated_at = None                                               # the step acc belongs to
        while step < end and not stop:
            src, tgt, mask = make_batch(data_rng, args.batch_size, args.seq_len, args.min_len, args.symbols)
            tgt = np.where(tgt == PAD, -100, tgt)                         # padding is left out of the loss
            loss = model(src, tgt, mask=mask)
            opt.zero_grad()
            loss.backward()
            norm = optim.clip_grad_norm_(params, args.clip) if args.clip else None
            finite = True
            if args.skip_nonfinite:
                norm = optim.grad_norm(params) if norm is None else norm
                finite = bool(xp.isfinite(loss.data) & xp.isfinite(norm.data))   # the one host read this costs
            if finite:
                opt.step()
            else:
                skipped += 1
                print(f"step {step + 1:5d}  non-finite loss or gradient norm: update skipped ({skipped} so far)",
                      flush=True)
            sched.step()
            losses[step - start_step] = loss.data
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
                evaluated_at = step
                print(f"eval  step {step:5d}  exact match {acc:.3f} on {args.eval_size} held-out sequences")
                for i in range(2):
                    print(f"   src  {show(eval_src[-1 - i][eval_mask[-1 - i]])}\n   pred {show(out[-1 - i])}")
                if args.save:
                    save(args.save)
                if acc >= args.target:
                    break
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    result = {"step": step, "losses": minitx.backend.to_numpy(losses[:step - start_step]),
              "final_loss": float("nan") if loss is None else loss.item(), "exact_match": None,
              "skipped": skipped, "save_failures": save_failures, "interrupted": stop[0] if stop else None}
    if stop or step < args.steps and step == end:
        print(f"{'interrupted' if stop else 'stopped'} at step {step}")
        if args.save and save(args.save):
            print(f"saved {args.save}; continue with --resume {args.save}")
        if stop:
            result["exit_code"] = 128 + stop[0]
        else:
            result["exit_code"] = 0 if last_save_ok else 1
        return result
    if evaluated_at != step:                    # e.g. resumed at the last step
        acc, _, _ = exact_match(model, eval_src, eval_tgt, eval_mask)
    wall = time.perf_counter() - t0
    skip_note = f"  skipped {skipped} non-finite steps" if args.skip_nonfinite else ""
    print(f"summary: steps {step}  wall {wall:.1f}s  final loss {result['final_loss']:.4f}  "
          f"exact match {acc * 100:.1f}% on {args.eval_size} held-out sequences  device {args.device}{skip_note}")
    result.update(exact_match=acc, exit_code=0 if last_save_ok else 1)
    return result


def main(argv=None):
    args = parse_args(argv)
    try:
        return train(args)["exit_code"]
    except minitx.MinitxError as e:          # a bad checkpoint, device or option: say so, no traceback
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
