"""Layers and models: ``Module``, ``Parameter``, the building blocks and the encoder-decoder."""
from .attention import Attention, KVCache, causal_mask
from .packing import RowPacking
from .encoder_decoder import EncoderDecoder, XTransformer, drop_context_tokens, sample
from .layers import (AbsolutePositionalEmbedding, Dropout, Embedding, FeedForward, LayerNorm, Linear,
                     SinusoidalPositionalEmbedding)
from .module import Module, ModuleList, Parameter
from .transformer import AttentionLayers, AutoregressiveWrapper, Block, Decoder, Encoder, TransformerWrapper

__all__ = ["Module", "ModuleList", "Parameter", "Linear", "Embedding", "LayerNorm", "Dropout",
           "FeedForward", "AbsolutePositionalEmbedding", "SinusoidalPositionalEmbedding", "Attention",
           "KVCache", "causal_mask", "Block", "AttentionLayers", "Encoder", "Decoder",
           "TransformerWrapper", "AutoregressiveWrapper", "EncoderDecoder", "XTransformer",
           "drop_context_tokens", "sample", "RowPacking"]
