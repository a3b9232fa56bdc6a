"""Reading a Hugging Face model folder without transformers: its weight files (safetensors or
PyTorch pickles) and its byte-level BPE tokenizer, as the GGUF writers need them; and the FIM
token ids both writers put in the metadata."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starcoder_ls.recipe.errors import RecipeError
from starcoder_ls.recipe.tokenizer import TOKENIZER_FILE

if TYPE_CHECKING:
    import torch


def weight_files(hf_dir: Path) -> list[Path]:
    files = sorted(hf_dir.glob("*.safetensors")) or sorted(hf_dir.glob("pytorch_model*.bin"))
    if not files:
        raise RecipeError(f"{hf_dir} has no weights (model*.safetensors or pytorch_model*.bin)")
    return files


def hf_state(hf_dir: Path) -> dict[str, torch.Tensor]:
    """All tensors in their stored dtype (converted one at a time later, to bound memory)."""
    import torch

    state: dict[str, torch.Tensor] = {}
    for file in weight_files(hf_dir):
        try:
            if file.suffix == ".safetensors":
                from safetensors.torch import load_file

                part = load_file(str(file))
            else:
                part = torch.load(str(file), map_location="cpu", weights_only=True)
        except Exception as exc:
            raise RecipeError(f"cannot read weights {file}: {exc}") from exc
        for key, tensor in part.items():
            state[key.removeprefix("transformer.")] = tensor
    return state


def bpe_vocab(hf_dir: Path, n_vocab: int) -> tuple[list[str], list[int], list[str], str]:
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
    if not tokens or max(tokens) >= n_vocab:
        raise RecipeError(
            f"{path} has {len(tokens)} tokens (max id {max(tokens, default=-1)}) but the model "
            f"only {n_vocab} embeddings"
        )
    token_list = [tokens.get(i, f"[PAD{i}]") for i in range(n_vocab)]
    type_list = [int(types.get(i, gguf.TokenType.UNUSED)) for i in range(n_vocab)]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    return token_list, type_list, merges, pre_name


def write_fim_ids(writer: Any, tokens: list[str]) -> None:
    """The ids of the FIM and repository tokens the vocabulary has, under llama.cpp's keys."""
    import gguf

    from starcoder_ls.prompt.tokens import (
        FILE_SEP,
        FIM_MIDDLE,
        FIM_PAD,
        FIM_PREFIX,
        FIM_SUFFIX,
        REPO_NAME,
    )

    keys = gguf.Keys.Tokenizer
    for key, tok in (
        (keys.FIM_PRE_ID, FIM_PREFIX), (keys.FIM_SUF_ID, FIM_SUFFIX), (keys.FIM_MID_ID, FIM_MIDDLE),
        (keys.FIM_PAD_ID, FIM_PAD), (keys.FIM_REP_ID, REPO_NAME), (keys.FIM_SEP_ID, FILE_SEP),
    ):  # fmt: skip
        if tok in tokens:
            writer.add_uint32(key, tokens.index(tok))
