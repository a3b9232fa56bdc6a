"""GGUF export of Llama-architecture models (SmolLM2 and its kin), for models ``recipe adapt``
made: llama.cpp's ``llama`` graph, the tokenizer as byte-level BPE, FIM token ids where the
tokenizer has them (so llama.cpp and the server find them).

Two layout changes, as llama.cpp's own converter makes them: the query and key projections are
permuted from Hugging Face's rotary layout (the two halves of each head) to GGML's (pairs), and
a tied output layer is left out (llama.cpp reuses the token embeddings).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from starcoder_ls.recipe.atomic import atomic_path
from starcoder_ls.recipe.errors import RecipeError

_LAYER = {
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def rotary_to_ggml(w: np.ndarray, n_head: int) -> np.ndarray:
    """Rows of a q/k projection from HF's rotary layout to GGML's (llama.cpp's ``permute``)."""
    return (
        w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
        .copy()
    )


def _names(cfg: dict[str, Any]) -> dict[str, str]:
    out = {
        "model.embed_tokens.weight": "token_embd.weight",
        "model.norm.weight": "output_norm.weight",
        "lm_head.weight": "output.weight",
    }
    for i in range(cfg["num_hidden_layers"]):
        for hf, gg in _LAYER.items():
            out[f"model.layers.{i}.{hf}.weight"] = f"blk.{i}.{gg}.weight"
    return out


def export_llama_gguf(
    hf_dir: Path, cfg: dict[str, Any], out_file: str | Path, *, outtype: str, name: str | None
) -> Path:
    import gguf
    import torch

    from starcoder_ls.recipe.hf_folder import bpe_vocab, hf_state, write_fim_ids

    if cfg.get("rope_scaling") not in (None, {}) and cfg["rope_scaling"].get("rope_type") not in (
        None,
        "default",
    ):
        raise RecipeError(f"{hf_dir}: RoPE scaling {cfg['rope_scaling']} is not exported yet")
    n_head, n_embd = cfg["num_attention_heads"], cfg["hidden_size"]
    n_kv = cfg.get("num_key_value_heads") or n_head
    head_dim = cfg.get("head_dim") or n_embd // n_head
    n_vocab = cfg["vocab_size"]
    tokens, token_types, merges, pre_name = bpe_vocab(hf_dir, n_vocab)
    state = hf_state(hf_dir)
    names = _names(cfg)
    tied = cfg.get("tie_word_embeddings", False)
    if tied:
        state.pop("lm_head.weight", None)
    elif "lm_head.weight" not in state:
        raise RecipeError(f"{hf_dir}: tie_word_embeddings is false but there is no lm_head.weight")
    missing = sorted(set(names) - set(state) - ({"lm_head.weight"} if tied else set()))
    unexpected = sorted(k for k in state if k not in names and "rotary_emb" not in k)
    if missing or unexpected:
        raise RecipeError(
            f"the weights in {hf_dir} are not a Llama model's "
            f"(missing: {', '.join(missing[:5]) or '-'}; unexpected: {', '.join(unexpected[:5]) or '-'})"
        )
    ftype = gguf.LlamaFileType.ALL_F32 if outtype == "f32" else gguf.LlamaFileType.MOSTLY_F16
    with atomic_path(out_file) as tmp:
        writer = gguf.GGUFWriter(tmp, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
        writer.add_name(name or re.sub(r"[-._](f32|f16)$", "", Path(out_file).stem, flags=re.I))
        writer.add_file_type(int(ftype))
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        writer.add_context_length(cfg.get("max_position_embeddings", 2048))
        writer.add_embedding_length(n_embd)
        writer.add_feed_forward_length(cfg["intermediate_size"])
        writer.add_block_count(cfg["num_hidden_layers"])
        writer.add_head_count(n_head)
        writer.add_head_count_kv(n_kv)
        writer.add_rope_dimension_count(head_dim)
        writer.add_rope_freq_base(float(cfg.get("rope_theta", 10000.0)))
        writer.add_layer_norm_rms_eps(float(cfg.get("rms_norm_eps", 1e-5)))
        writer.add_vocab_size(n_vocab)
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(pre_name)
        writer.add_token_list(tokens)
        writer.add_token_types(token_types)
        writer.add_token_merges(merges)
        eos = cfg.get("eos_token_id")
        eos = eos[0] if isinstance(eos, list) else eos
        if eos is not None:
            writer.add_eos_token_id(int(eos))
        bos = cfg.get("bos_token_id")
        if bos is not None:
            writer.add_bos_token_id(int(bos))
        writer.add_add_bos_token(False)
        write_fim_ids(writer, tokens)
        for hf_name, gg_name in names.items():
            if hf_name not in state:
                continue
            data = state.pop(hf_name).to(torch.float32).numpy()
            if hf_name.endswith("q_proj.weight"):
                data = rotary_to_ggml(data, n_head)
            elif hf_name.endswith("k_proj.weight"):
                data = rotary_to_ggml(data, n_kv)
            if outtype == "f16" and data.ndim == 2:
                data = data.astype(np.float16)
            writer.add_tensor(gg_name, data)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return Path(out_file)
