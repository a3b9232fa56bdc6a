"""Export a trained model as a Hugging Face folder and as a GGUF file for llama.cpp.

The HF folder is the interchange format: ``transformers`` loads it offline, and the GGUF
converter reads only HF folders, so one code path serves our own models and real
StarCoder/StarCoderBase/SantaCoder (GPTBigCode) downloads alike. The GGUF file is what the
offline backend runs in-process through llama-cpp-python; it is written with the ``gguf``
package directly (no llama.cpp checkout needed), following llama.cpp's own converter for the
``starcoder`` architecture.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starcoder_ls.prompt.tokens import (
    ENDOFTEXT,
    FILE_SEP,
    FIM_MIDDLE,
    FIM_PAD,
    FIM_PREFIX,
    FIM_SUFFIX,
    REPO_NAME,
    SPECIAL_TOKENS,
)
from starcoder_ls.recipe.atomic import atomic_path
from starcoder_ls.recipe.errors import RecipeError
from starcoder_ls.recipe.hf_folder import bpe_vocab, hf_state, weight_files, write_fim_ids
from starcoder_ls.recipe.tokenizer import TOKENIZER_FILE, CodeTokenizer

if TYPE_CHECKING:
    import numpy as np
    import torch

HF_DTYPES = ("float32", "float16", "bfloat16")
GGUF_TYPES = ("f32", "f16")
EXPORTABLE = ("gpt_bigcode", "llama")
# tokenizer_config.json keys that name the FIM/repository tokens, so downstream tools (and our
# own prompt builder) need not hard-code StarCoder's spelling.
FIM_CONFIG_KEYS = {
    "fim_prefix_token": FIM_PREFIX,
    "fim_middle_token": FIM_MIDDLE,
    "fim_suffix_token": FIM_SUFFIX,
    "fim_pad_token": FIM_PAD,
    "repo_name_token": REPO_NAME,
    "file_sep_token": FILE_SEP,
}
# llama.cpp computes GELU with the tanh approximation; HF's exact "gelu" differs by < 1e-3.
_GELU_ACTIVATIONS = ("gelu_pytorch_tanh", "gelu_new", "gelu_fast", "gelu")


# --------------------------------------------------------------------------- Hugging Face


def export_hf(
    model: Any, tokenizer: CodeTokenizer, out_dir: str | Path, *, dtype: str = "float16"
) -> Path:
    """Write a self-contained HF folder; ``out_dir`` is replaced only once it is complete."""
    import torch
    from safetensors.torch import save_file
    from transformers import GenerationConfig

    if dtype not in HF_DTYPES:
        raise RecipeError(f"unknown dtype {dtype!r}; choose one of: {', '.join(HF_DTYPES)}")
    model = getattr(model, "_orig_mod", model)  # torch.compile wrapper
    model = getattr(model, "module", model)  # DistributedDataParallel wrapper
    config = model.config
    if getattr(config, "model_type", None) != "gpt_bigcode":
        raise RecipeError(f"can only export GPTBigCode models, not {type(model).__name__}")
    if tokenizer.vocab_size > config.vocab_size:
        raise RecipeError(
            f"the tokenizer has {tokenizer.vocab_size} tokens but the model only "
            f"{config.vocab_size} embeddings: they do not belong together"
        )
    torch_dtype = getattr(torch, dtype)
    state = {
        k: v.detach().to(device="cpu", dtype=torch_dtype).contiguous()
        for k, v in model.state_dict().items()
    }
    if config.tie_word_embeddings:
        # Shared tensors cannot go into safetensors; HF re-ties lm_head to wte on load.
        state.pop("lm_head.weight", None)
    eos = tokenizer.eos_id
    with atomic_path(out_dir, directory=True) as tmp:
        config = type(config).from_dict(config.to_dict())
        config.architectures = ["GPTBigCodeForCausalLM"]
        config.bos_token_id = config.eos_token_id = eos
        if isinstance(getattr(type(config), "torch_dtype", None), property):
            config.dtype = dtype  # newer transformers: "torch_dtype" is a deprecated alias
        else:
            config.torch_dtype = dtype
        config.save_pretrained(tmp)
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        GenerationConfig(bos_token_id=eos, eos_token_id=eos, pad_token_id=eos).save_pretrained(tmp)
        tokenizer.save(tmp / TOKENIZER_FILE)
        specials = [t for t in SPECIAL_TOKENS if tokenizer.backend.token_to_id(t) is not None]  # type: ignore[attr-defined]
        token_map = {
            "bos_token": ENDOFTEXT,
            "eos_token": ENDOFTEXT,
            "unk_token": ENDOFTEXT,
            "additional_special_tokens": specials,
        }
        tok_config = {
            "tokenizer_class": "PreTrainedTokenizerFast",
            **token_map,
            **{k: v for k, v in FIM_CONFIG_KEYS.items() if v in specials},
            "add_bos_token": False,
            "add_eos_token": False,
            "add_prefix_space": False,
            "clean_up_tokenization_spaces": False,
            "model_max_length": int(config.n_positions),
        }
        for name, data in (
            ("tokenizer_config.json", tok_config),
            ("special_tokens_map.json", token_map),
        ):
            (tmp / name).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return Path(out_dir)


def _read_config(hf_dir: Path) -> dict[str, Any]:
    if not hf_dir.is_dir():
        raise RecipeError(f"model folder not found: {hf_dir}")
    path = hf_dir / "config.json"
    if not path.is_file():
        raise RecipeError(f"{hf_dir} is not a Hugging Face model folder: it has no config.json")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RecipeError(f"cannot read {path}: {exc}") from exc
    kind = config.get("model_type")
    if kind not in EXPORTABLE:
        raise RecipeError(
            f"{hf_dir} holds a {kind!r} model; GGUF export takes GPTBigCode (StarCoder-family, "
            "model_type 'gpt_bigcode') and Llama-architecture models ('llama')"
        )
    return config


def load_hf(path: str | Path, *, dtype: str = "float32") -> tuple[Any, CodeTokenizer]:
    """Load a GPTBigCode folder (ours or a real StarCoder download) for evaluation on CPU/GPU.

    float32 is the default because CPU kernels for half precision are slow or missing; pass
    ``dtype="auto"`` to keep the checkpoint's own dtype (a 15B model in float32 needs 60 GB).
    """
    import torch
    from transformers import AutoModelForCausalLM

    hf_dir = Path(path)
    _read_config(hf_dir)
    weight_files(hf_dir)
    tokenizer = CodeTokenizer.load(hf_dir / TOKENIZER_FILE)
    try:
        model = AutoModelForCausalLM.from_pretrained(str(hf_dir), local_files_only=True)
    except Exception as exc:
        raise RecipeError(f"cannot load the model in {hf_dir}: {exc}") from exc
    if dtype != "auto":
        model = model.to(getattr(torch, dtype))
    return model.eval(), tokenizer


# --------------------------------------------------------------------------- GGUF


def _gguf_tensor_names(n_layer: int) -> dict[str, str]:
    import gguf

    t, names = gguf.MODEL_TENSOR, gguf.TENSOR_NAMES
    out = {"wte": names[t.TOKEN_EMBD], "wpe": names[t.POS_EMBD], "ln_f": names[t.OUTPUT_NORM]}
    out["lm_head"] = names[t.OUTPUT]
    block = {
        "ln_1": t.ATTN_NORM, "attn.c_attn": t.ATTN_QKV, "attn.c_proj": t.ATTN_OUT,
        "ln_2": t.FFN_NORM, "mlp.c_fc": t.FFN_UP, "mlp.c_proj": t.FFN_DOWN,
    }  # fmt: skip
    for i in range(n_layer):
        for hf, kind in block.items():
            out[f"h.{i}.{hf}"] = names[kind].format(bid=i)
    return out


def _expected_shapes(cfg: dict[str, Any], n_kv: int) -> dict[str, tuple[int, ...]]:
    e, v, inner = cfg["n_embd"], cfg["vocab_size"], cfg.get("n_inner") or 4 * cfg["n_embd"]
    qkv = e + 2 * n_kv * (e // cfg["n_head"])
    shapes: dict[str, tuple[int, ...]] = {
        "wte.weight": (v, e), "wpe.weight": (cfg["n_positions"], e),
        "ln_f.weight": (e,), "ln_f.bias": (e,),
    }  # fmt: skip
    for i in range(cfg["n_layer"]):
        for part, out_dim, in_dim in (
            ("ln_1", e, 0), ("ln_2", e, 0), ("attn.c_attn", qkv, e), ("attn.c_proj", e, e),
            ("mlp.c_fc", inner, e), ("mlp.c_proj", e, inner),
        ):  # fmt: skip
            shapes[f"h.{i}.{part}.weight"] = (out_dim, in_dim) if in_dim else (out_dim,)
            shapes[f"h.{i}.{part}.bias"] = (out_dim,)
    return shapes


def _check_config(cfg: dict[str, Any], hf_dir: Path) -> None:
    problems = []
    if cfg.get("add_cross_attention"):
        problems.append("cross-attention is not supported by llama.cpp")
    if not cfg.get("scale_attn_weights", True):
        problems.append("llama.cpp always scales attention by 1/sqrt(head_dim)")
    if cfg.get("activation_function", "gelu_pytorch_tanh") not in _GELU_ACTIVATIONS:
        problems.append(f"activation {cfg['activation_function']!r} is not GELU")
    if cfg["n_embd"] % cfg["n_head"]:
        problems.append("n_embd is not a multiple of n_head")
    if problems:
        raise RecipeError(f"cannot convert {hf_dir} to GGUF: " + "; ".join(problems))


def _qkv_rows_to_llama(arr: np.ndarray, n_head: int) -> np.ndarray:
    """Without multi-query, HF interleaves q/k/v per head; llama.cpp wants all q, all k, all v."""
    head_dim = arr.shape[0] // (3 * n_head)
    rest = arr.shape[1:]
    return arr.reshape(n_head, 3, head_dim, *rest).swapaxes(0, 1).reshape(arr.shape).copy()


def _checked_weights(
    hf_dir: Path, cfg: dict[str, Any], n_kv: int
) -> tuple[dict[str, torch.Tensor], dict[str, tuple[int, ...]]]:
    """The weights llama.cpp needs and their shapes, or one error that lists every mismatch
    (llama.cpp itself would stop at the first, and only at load time)."""
    state = hf_state(hf_dir)
    for key in [k for k in state if k.endswith((".attn.bias", ".attn.masked_bias"))]:
        del state[key]  # causal-mask buffers of old checkpoints, not weights
    expected = _expected_shapes(cfg, n_kv)
    tied = cfg.get("tie_word_embeddings", True)
    if "lm_head.weight" in state:
        if tied:
            del state["lm_head.weight"]  # HF ignores it too; llama.cpp reuses token_embd
        else:
            expected["lm_head.weight"] = (cfg["vocab_size"], cfg["n_embd"])
    elif not tied:
        raise RecipeError(f"{hf_dir}: tie_word_embeddings is false but there is no lm_head.weight")
    problems = {
        "missing": sorted(set(expected) - set(state)),
        "unexpected": sorted(set(state) - set(expected)),
        "wrong shape": [
            f"{k} {tuple(state[k].shape)} != {shape}"
            for k, shape in expected.items()
            if k in state and tuple(state[k].shape) != shape
        ],
    }
    detail = "; ".join(
        f"{kind}: {', '.join(items[:5])}" for kind, items in problems.items() if items
    )
    if detail:
        raise RecipeError(f"the weights in {hf_dir} do not fit its config.json ({detail})")
    return state, expected


def export_gguf(
    hf_dir: str | Path, out_file: str | Path, *, outtype: str = "f32", name: str | None = None
) -> Path:
    """Convert a GPTBigCode HF folder into a GGUF file for llama.cpp's ``starcoder`` graph.

    ``name`` (``general.name``) defaults to the output file's stem without a trailing
    ``-f32``/``-f16`` (so ``starcoder-ls-tiny-f32.gguf`` is named ``starcoder-ls-tiny``).
    """
    import gguf
    import numpy as np
    import torch

    if outtype not in GGUF_TYPES:
        raise RecipeError(f"unknown GGUF type {outtype!r}; choose one of: {', '.join(GGUF_TYPES)}")
    hf_dir = Path(hf_dir)
    cfg = _read_config(hf_dir)
    if cfg["model_type"] == "llama":  # what recipe adapt makes of SmolLM2 and its kin
        from starcoder_ls.recipe.gguf_llama import export_llama_gguf

        return export_llama_gguf(hf_dir, cfg, out_file, outtype=outtype, name=name)
    _check_config(cfg, hf_dir)
    multi_query = cfg.get("multi_query", True)
    n_kv = 1 if multi_query else cfg["n_head"]
    n_vocab = cfg["vocab_size"]
    tokens, token_types, merges, pre_name = bpe_vocab(hf_dir, n_vocab)
    state, expected = _checked_weights(hf_dir, cfg, n_kv)

    arch = gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.STARCODER]
    ftype = gguf.LlamaFileType.ALL_F32 if outtype == "f32" else gguf.LlamaFileType.MOSTLY_F16
    names = _gguf_tensor_names(cfg["n_layer"])
    with atomic_path(out_file) as tmp:
        writer = gguf.GGUFWriter(tmp, arch)
        writer.add_name(name or re.sub(r"[-._](f32|f16)$", "", Path(out_file).stem, flags=re.I))
        writer.add_file_type(int(ftype))
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        writer.add_context_length(cfg["n_positions"])
        writer.add_embedding_length(cfg["n_embd"])
        writer.add_feed_forward_length(cfg.get("n_inner") or 4 * cfg["n_embd"])
        writer.add_block_count(cfg["n_layer"])
        writer.add_head_count(cfg["n_head"])
        writer.add_head_count_kv(n_kv)
        writer.add_layer_norm_eps(cfg.get("layer_norm_epsilon", 1e-5))
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(pre_name)
        writer.add_token_list(tokens)
        writer.add_token_types(token_types)
        writer.add_token_merges(merges)
        eos = tokens.index(ENDOFTEXT) if ENDOFTEXT in tokens else cfg.get("eos_token_id", 0)
        writer.add_bos_token_id(eos)
        writer.add_eos_token_id(eos)
        writer.add_eot_token_id(eos)
        writer.add_add_bos_token(False)
        write_fim_ids(writer, tokens)
        for key in expected:
            module, _, kind = key.rpartition(".")
            data = state.pop(key).to(torch.float32).numpy()
            if module.endswith("attn.c_attn") and not multi_query:
                data = _qkv_rows_to_llama(data, cfg["n_head"])
            # As llama.cpp's converter: f16 only for matrices; norms, biases and the position
            # table stay f32 (they are small and precision-sensitive).
            if outtype == "f16" and data.ndim == 2 and module != "wpe":
                data = data.astype(np.float16)
            writer.add_tensor(f"{names[module]}.{kind}", data)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return Path(out_file)


# --------------------------------------------------------------------------- CLI


def cli_register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a trained model as a Hugging Face folder (and a GGUF file)",
        description="Write a Hugging Face folder (transformers loads it offline) from a training "
        "run's output directory or an existing GPTBigCode HF folder, and optionally convert it "
        "to GGUF for llama.cpp.",
    )
    p.add_argument("source", type=Path, help="training run directory or HF folder")
    p.add_argument(
        "--hf-out",
        type=Path,
        help="HF folder to write (not needed to convert an HF folder to GGUF)",
    )
    p.add_argument("--gguf-out", type=Path, help="GGUF file to write as well")
    p.add_argument("--dtype", choices=HF_DTYPES, default="float16", help="HF weights dtype")
    p.add_argument("--gguf-type", choices=GGUF_TYPES, default="f32", help="GGUF tensor type")
    p.set_defaults(func=_cli_export)


def _cli_export(args: argparse.Namespace) -> int:
    source: Path = args.source
    if not source.exists():
        raise RecipeError(f"not found: {source}")
    if args.hf_out is None:
        if not (source / "config.json").is_file() or args.gguf_out is None:
            raise RecipeError(
                "give --hf-out (a training run becomes an HF folder first), or an HF folder "
                "and --gguf-out to convert it"
            )
        gguf_out = export_gguf(source, args.gguf_out, outtype=args.gguf_type)
        print(json.dumps({"gguf": str(gguf_out), "gguf_bytes": gguf_out.stat().st_size}))
        return 0
    if (source / "config.json").is_file():
        model, tokenizer = load_hf(source)
    else:
        from starcoder_ls.recipe.train import load_checkpoint_model

        model, tokenizer = load_checkpoint_model(source)
    hf_out = export_hf(model, tokenizer, args.hf_out, dtype=args.dtype)
    result: dict[str, object] = {"hf": str(hf_out)}
    if args.gguf_out is not None:
        gguf_out = Path(args.gguf_out)
        gguf_out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".export-", dir=gguf_out.parent) as tmp:
            # The GGUF gets the full-precision weights, not the HF folder's rounded copy.
            src = hf_out if args.dtype == "float32" else export_hf(model, tokenizer, Path(tmp) / "hf", dtype="float32")  # fmt: skip
            export_gguf(src, gguf_out, outtype=args.gguf_type, name=hf_out.resolve().name)
        result["gguf"] = str(gguf_out)
        result["gguf_bytes"] = gguf_out.stat().st_size
    print(json.dumps(result))
    return 0
