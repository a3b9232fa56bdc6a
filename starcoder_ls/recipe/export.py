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
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starcoder_ls.recipe.atomic import atomic_path
from starcoder_ls.recipe.errors import RecipeError
from starcoder_ls.recipe.tokenizer import TOKENIZER_FILE, CodeTokenizer
from starcoder_ls.recipe.tokens import (
    ENDOFTEXT,
    FILE_SEP,
    FIM_MIDDLE,
    FIM_PAD,
    FIM_PREFIX,
    FIM_SUFFIX,
    REPO_NAME,
    SPECIAL_TOKENS,
)

if TYPE_CHECKING:
    import numpy as np
    from llama_cpp import Llama

HF_DTYPES = ("float32", "float16", "bfloat16")
GGUF_TYPES = ("f32", "f16")
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


def share_permissions(path: Path) -> None:
    """Temp files are created 0600/0700; a model is meant to be read by others (a shared box)."""
    if path.is_dir():
        path.chmod(0o755)
        for child in path.iterdir():
            share_permissions(child)
    else:
        path.chmod(0o644)


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
        config.dtype = dtype  # written as "dtype" (transformers 5) / "torch_dtype" (4.x)
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
        share_permissions(tmp)
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
    if kind != "gpt_bigcode":
        raise RecipeError(
            f"{hf_dir} holds a {kind!r} model; only GPTBigCode (StarCoder-family, "
            "model_type 'gpt_bigcode') models are supported"
        )
    return config


def _weight_files(hf_dir: Path) -> list[Path]:
    files = sorted(hf_dir.glob("*.safetensors")) or sorted(hf_dir.glob("pytorch_model*.bin"))
    if not files:
        raise RecipeError(f"{hf_dir} has no weights (model*.safetensors or pytorch_model*.bin)")
    return files


def load_hf(path: str | Path, *, dtype: str = "float32") -> tuple[Any, CodeTokenizer]:
    """Load a GPTBigCode folder (ours or a real StarCoder download) for evaluation on CPU/GPU.

    float32 is the default because CPU kernels for half precision are slow or missing; pass
    ``dtype="auto"`` to keep the checkpoint's own dtype (a 15B model in float32 needs 60 GB).
    """
    import torch
    from transformers import AutoModelForCausalLM

    hf_dir = Path(path)
    _read_config(hf_dir)
    _weight_files(hf_dir)
    tokenizer = CodeTokenizer.load(hf_dir / TOKENIZER_FILE)
    try:
        model = AutoModelForCausalLM.from_pretrained(str(hf_dir), local_files_only=True)
    except Exception as exc:
        raise RecipeError(f"cannot load the model in {hf_dir}: {exc}") from exc
    if dtype != "auto":
        model = model.to(getattr(torch, dtype))
    return model.eval(), tokenizer


# --------------------------------------------------------------------------- GGUF


def _hf_state(hf_dir: Path) -> dict[str, np.ndarray]:
    """All tensors as float32 numpy arrays, keys without the ``transformer.`` prefix."""
    import torch

    state: dict[str, np.ndarray] = {}
    for file in _weight_files(hf_dir):
        try:
            if file.suffix == ".safetensors":
                from safetensors.torch import load_file

                part = load_file(str(file))
            else:
                part = torch.load(str(file), map_location="cpu", weights_only=True)
        except Exception as exc:
            raise RecipeError(f"cannot read weights {file}: {exc}") from exc
        for key, tensor in part.items():
            state[key.removeprefix("transformer.")] = tensor.to(torch.float32).numpy()
    return state


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


def _vocab(hf_dir: Path, n_vocab: int) -> tuple[list[str], list[int], list[str], str]:
    """Tokens in id order, their types, the BPE merges and llama.cpp's pre-tokenizer name."""
    import gguf

    path = hf_dir / TOKENIZER_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RecipeError(f"cannot read the tokenizer {path}: {exc}") from exc
    model = data.get("model") or {}
    if model.get("type") != "BPE":
        raise RecipeError(f"{path} is not a BPE tokenizer; GGUF export needs byte-level BPE")
    pre = json.dumps(data.get("pre_tokenizer"))
    if '"ByteLevel"' not in pre:
        raise RecipeError(f"{path} is not byte-level; llama.cpp's gpt2 tokenizer cannot run it")
    # StarCoder splits every digit first; llama.cpp calls that pre-tokenizer "starcoder".
    pre_name = "starcoder" if '"individual_digits": true' in pre else "gpt-2"
    tokens: dict[int, str] = {int(i): t for t, i in model["vocab"].items()}
    types = {i: gguf.TokenType.NORMAL for i in tokens}
    for added in data.get("added_tokens", []):
        tokens[added["id"]] = added["content"]
        special = added.get("special", False)
        types[added["id"]] = gguf.TokenType.CONTROL if special else gguf.TokenType.USER_DEFINED
    if max(tokens) >= n_vocab:
        raise RecipeError(
            f"{path} has token id {max(tokens)} but the model only {n_vocab} embeddings"
        )
    token_list = [tokens.get(i, f"[PAD{i}]") for i in range(n_vocab)]
    type_list = [int(types.get(i, gguf.TokenType.UNUSED)) for i in range(n_vocab)]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    return token_list, type_list, merges, pre_name


def _qkv_rows_to_llama(arr: np.ndarray, n_head: int) -> np.ndarray:
    """Without multi-query, HF interleaves q/k/v per head; llama.cpp wants all q, all k, all v."""
    head_dim = arr.shape[0] // (3 * n_head)
    rest = arr.shape[1:]
    return arr.reshape(n_head, 3, head_dim, *rest).swapaxes(0, 1).reshape(arr.shape).copy()


def export_gguf(hf_dir: str | Path, out_file: str | Path, *, outtype: str = "f32") -> Path:
    """Convert a GPTBigCode HF folder into a GGUF file for llama.cpp's ``starcoder`` graph."""
    import gguf
    import numpy as np

    if outtype not in GGUF_TYPES:
        raise RecipeError(f"unknown GGUF type {outtype!r}; choose one of: {', '.join(GGUF_TYPES)}")
    hf_dir = Path(hf_dir)
    cfg = _read_config(hf_dir)
    _check_config(cfg, hf_dir)
    multi_query = cfg.get("multi_query", True)
    n_kv = 1 if multi_query else cfg["n_head"]
    n_vocab = cfg["vocab_size"]
    tokens, token_types, merges, pre_name = _vocab(hf_dir, n_vocab)
    state = _hf_state(hf_dir)
    for key in [k for k in state if k.endswith((".attn.bias", ".attn.masked_bias"))]:
        del state[key]  # causal-mask buffers of old checkpoints, not weights
    expected = _expected_shapes(cfg, n_kv)
    tied = cfg.get("tie_word_embeddings", True)
    if "lm_head.weight" in state:
        if tied:
            del state["lm_head.weight"]  # HF ignores it too; llama.cpp reuses token_embd
        else:
            expected["lm_head.weight"] = (n_vocab, cfg["n_embd"])
    elif not tied:
        raise RecipeError(f"{hf_dir}: tie_word_embeddings is false but there is no lm_head.weight")
    missing = sorted(set(expected) - set(state))
    unknown = sorted(set(state) - set(expected))
    wrong = [f"{k} {state[k].shape} != {expected[k]}" for k in expected if k in state and state[k].shape != expected[k]]  # fmt: skip
    if missing or unknown or wrong:
        detail = "; ".join(
            f"{label}: {', '.join(items[:5])}{' ...' if len(items) > 5 else ''}"
            for label, items in (
                ("missing", missing),
                ("unexpected", unknown),
                ("wrong shape", wrong),
            )
            if items
        )
        raise RecipeError(f"the weights in {hf_dir} do not fit its config.json ({detail})")

    arch = gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.STARCODER]
    ftype = gguf.LlamaFileType.ALL_F32 if outtype == "f32" else gguf.LlamaFileType.MOSTLY_F16
    names = _gguf_tensor_names(cfg["n_layer"])
    with atomic_path(out_file) as tmp:
        writer = gguf.GGUFWriter(tmp, arch)
        writer.add_name(hf_dir.resolve().name)
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
        keys = gguf.Keys.Tokenizer
        for key, tok in (
            (keys.FIM_PRE_ID, FIM_PREFIX), (keys.FIM_SUF_ID, FIM_SUFFIX), (keys.FIM_MID_ID, FIM_MIDDLE),
            (keys.FIM_PAD_ID, FIM_PAD), (keys.FIM_REP_ID, REPO_NAME), (keys.FIM_SEP_ID, FILE_SEP),
        ):  # fmt: skip
            if tok in tokens:
                writer.add_uint32(key, tokens.index(tok))
        for key in expected:
            module, _, kind = key.rpartition(".")
            data = state.pop(key)
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
        share_permissions(tmp)
    return Path(out_file)


GGUF_MAGIC = b"GGUF"


def check_gguf_file(path: str | Path) -> Path:
    """Reject a missing or non-GGUF file before llama.cpp does, with a message that says which."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"GGUF file not found: {path}")
    with path.open("rb") as f:
        magic = f.read(4)
    if magic != GGUF_MAGIC:
        raise RecipeError(
            f"{path} is not a GGUF file (it starts with {magic!r}, not {GGUF_MAGIC!r}); "
            "convert a Hugging Face folder with `starcoder-ls recipe export --gguf-out`"
        )
    return path


class LlamaLog:
    """What llama.cpp logged: llama-cpp-python throws its reasons away when not verbose."""

    ERROR = 4  # ggml_log_level: NONE 0, DEBUG 1, INFO 2, WARN 3, ERROR 4, CONT 5
    CONT = 5

    def __init__(self) -> None:
        self.lines: list[tuple[int, str]] = []

    def add(self, level: int, text: str) -> None:
        if level == self.CONT and self.lines:
            level = self.lines[-1][0]  # a continuation keeps the level of the line it extends
        self.lines.append((level, text))

    def reason(self) -> str:
        """The error lines, which say why a load or a quantization failed."""
        text = "".join(t for level, t in self.lines if level == self.ERROR)
        return " ".join(text.split())


@contextlib.contextmanager
def llama_log_capture(*, forward: bool = False) -> Iterator[LlamaLog]:
    """Route llama.cpp's log into a ``LlamaLog`` (and on to llama-cpp-python's when ``forward``)."""
    import ctypes

    import llama_cpp
    from llama_cpp import _logger

    log = LlamaLog()

    @llama_cpp.llama_log_callback  # type: ignore[untyped-decorator]
    def callback(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        log.add(level, text.decode("utf-8", "replace"))
        if forward:
            _logger.llama_log_callback(level, text, user_data)

    llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))
    try:
        yield log
    finally:
        llama_cpp.llama_log_set(_logger.llama_log_callback, ctypes.c_void_p(0))


def load_gguf(path: str | Path, **kwargs: Any) -> Llama:
    """Open a GGUF in llama.cpp, turning its bare ``ValueError`` into a message that says why."""
    path = check_gguf_file(path)
    import llama_cpp

    kwargs.setdefault("verbose", False)
    with llama_log_capture(forward=bool(kwargs["verbose"])) as log:
        try:
            return llama_cpp.Llama(model_path=str(path), **kwargs)
        except ValueError as exc:
            reason = log.reason() or str(exc)
            raise RecipeError(f"llama.cpp cannot load {path}: {reason}") from exc


# --------------------------------------------------------------------------- CLI


def cli_register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "export",
        help="export a trained model as a Hugging Face folder (and a GGUF file)",
        description="Write a Hugging Face folder (transformers loads it offline) from a training "
        "run's output directory or an existing GPTBigCode HF folder, and optionally convert it "
        "to GGUF for llama.cpp.",
    )
    p.add_argument("source", type=Path, help="training run directory or GPTBigCode HF folder")
    p.add_argument("--hf-out", type=Path, required=True, help="HF folder to write")
    p.add_argument("--gguf-out", type=Path, help="GGUF file to write as well")
    p.add_argument("--dtype", choices=HF_DTYPES, default="float16", help="HF weights dtype")
    p.add_argument("--gguf-type", choices=GGUF_TYPES, default="f32", help="GGUF tensor type")
    p.set_defaults(func=_cli_export)


def _cli_export(args: argparse.Namespace) -> int:
    source: Path = args.source
    if not source.exists():
        raise RecipeError(f"not found: {source}")
    if (source / "config.json").is_file():
        model, tokenizer = load_hf(source)
    else:
        from starcoder_ls.recipe.train import load_checkpoint_model

        model, tokenizer = load_checkpoint_model(source)
    result: dict[str, object] = {
        "hf": str(export_hf(model, tokenizer, args.hf_out, dtype=args.dtype))
    }
    if args.gguf_out is not None:
        gguf_file = export_gguf(args.hf_out, args.gguf_out, outtype=args.gguf_type)
        result["gguf"] = str(gguf_file)
        result["gguf_bytes"] = gguf_file.stat().st_size
    print(json.dumps(result))
    return 0
