"""The benchmark configurations (reverse-copy task, tied embeddings, decoder length = source + 2)."""
from dataclasses import dataclass


@dataclass(frozen=True)
class Config:
    name: str
    dim: int
    depth: int        # encoder depth = decoder depth
    heads: int
    dim_head: int
    src_len: int
    batch: int
    symbols: int = 16

    @property
    def vocab(self):
        return self.symbols + 3       # PAD, BOS, EOS + symbols


CONFIGS = {
    "tiny": Config("tiny", dim=64, depth=1, heads=2, dim_head=64, src_len=8, batch=8),
    "small": Config("small", dim=128, depth=2, heads=4, dim_head=64, src_len=16, batch=32),
    "base": Config("base", dim=512, depth=3, heads=8, dim_head=64, src_len=32, batch=32),
    # The x-transformers README's encoder-decoder: dim 512, depth 6, 8 heads, 256 tokens
    # (symbols 253 + PAD/BOS/EOS), source length 1024, batch 1.  The decoder length is
    # src_len + 2 = 1026 here (the reverse-copy target), not the README's 1024.
    "xt-readme": Config("xt-readme", dim=512, depth=6, heads=8, dim_head=64, src_len=1024, batch=1,
                        symbols=253),
}

CPU_DEFAULT = ["tiny", "small", "base"]
GPU_DEFAULT = ["tiny", "small", "base", "xt-readme"]
