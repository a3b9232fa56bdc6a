"""Triton kernels for the transformers backend, each with a plain PyTorch reference beside it.

Installed as ``starcoder_ls.kernels``. The modules that define Triton kernels import ``triton``
at the top and are imported only when kernels are wanted; the references and the int4 packer
need only torch, so the reference path works wherever the transformers backend does.

- ``attention_reference`` / ``decode_attention``: one new query token per sequence against the
  KV cache (multi-query and grouped-query heads, variable lengths), flash-decoding with a
  log-sum-exp merge of the KV splits.
- ``int4`` / ``int4_matmul``: group-wise 4-bit weight-only quantization of ``nn.Linear``
  weights, and the fused dequantize-matmul for decode (GEMV-like) and prefill (GEMM) shapes.
- ``integration``: how a transformers model uses them, the start-up self-check, and the switch
  that forces the reference path.
"""
