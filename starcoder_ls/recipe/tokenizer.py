"""Byte-level BPE tokenizer, trained with Hugging Face ``tokenizers``.

The pre-tokenizer is the one StarCoder ships and llama.cpp implements as its ``starcoder``
pre-tokenizer: every digit is its own piece, then GPT-2's byte-level regex. Because the two
implementations split text identically, a GGUF export of the model tokenizes exactly as the
Hugging Face folder does (a test checks this through llama.cpp).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from starcoder_ls.prompt.tokens import ENDOFTEXT, SPECIAL_IDS, SPECIAL_TOKENS, STOP_TOKENS
from starcoder_ls.recipe.atomic import atomic_path
from starcoder_ls.recipe.errors import RecipeError

TOKENIZER_FILE = "tokenizer.json"


@dataclass
class CodeTokenizer:
    """A thin wrapper that gives the recipe what it needs from a ``tokenizers.Tokenizer``."""

    backend: object  # tokenizers.Tokenizer (kept untyped so importing this module stays cheap)

    @classmethod
    def load(cls, path: str | Path) -> CodeTokenizer:
        from tokenizers import Tokenizer

        path = Path(path)
        if path.is_dir():
            path = path / TOKENIZER_FILE
        if not path.is_file():
            raise RecipeError(
                f"tokenizer not found: {path} (train one with `starcoder-ls recipe tokenizer`)"
            )
        try:
            tok = Tokenizer.from_file(str(path))
        except Exception as exc:
            raise RecipeError(f"cannot read tokenizer {path}: {exc}") from exc
        return cls(tok)

    @property
    def vocab_size(self) -> int:
        return int(self.backend.get_vocab_size(with_added_tokens=True))  # type: ignore[attr-defined]

    def token_id(self, token: str) -> int:
        tid = self.backend.token_to_id(token)  # type: ignore[attr-defined]
        if tid is None:
            raise RecipeError(f"the tokenizer has no token {token!r}")
        return int(tid)

    @property
    def eos_id(self) -> int:
        return self.token_id(ENDOFTEXT)

    @property
    def stop_ids(self) -> list[int]:
        return [self.token_id(t) for t in STOP_TOKENS]

    def encode(self, text: str) -> list[int]:
        """Encode plain text; special-token spellings inside ``text`` become their ids."""
        return list(self.backend.encode(text, add_special_tokens=False).ids)  # type: ignore[attr-defined]

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        encs = self.backend.encode_batch(list(texts), add_special_tokens=False)  # type: ignore[attr-defined]
        return [list(e.ids) for e in encs]

    def decode(self, ids: Iterable[int], *, skip_special: bool = False) -> str:
        return str(self.backend.decode(list(ids), skip_special_tokens=skip_special))  # type: ignore[attr-defined]

    def save(self, path: str | Path) -> None:
        with atomic_path(path) as tmp:
            self.backend.save(str(tmp))  # type: ignore[attr-defined]


def new_tokenizer() -> object:
    """An untrained tokenizer with StarCoder's normaliser/pre-tokenizer/decoder pipeline."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
        ]
    )
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.decoder = decoders.ByteLevel()
    return tok


def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int,
    *,
    length: int | None = None,
    min_frequency: int = 2,
    progress: bool = False,
) -> CodeTokenizer:
    """Train byte-level BPE; special tokens get ids 0..N-1 in ``SPECIAL_TOKENS`` order."""
    from tokenizers import pre_tokenizers, trainers

    if vocab_size < len(SPECIAL_TOKENS) + 256:
        raise RecipeError(
            f"vocab size {vocab_size} is too small: it needs room for the 256 byte tokens "
            f"and {len(SPECIAL_TOKENS)} special tokens"
        )
    tok = new_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=progress,
    )
    tok.train_from_iterator(texts, trainer=trainer, length=length)  # type: ignore[attr-defined]
    result = CodeTokenizer(tok)
    for token, expected in SPECIAL_IDS.items():
        if result.token_id(token) != expected:  # pragma: no cover - guards a tokenizers change
            raise RecipeError(
                f"special token {token} got id {result.token_id(token)}, not {expected}"
            )
    return result


def _corpus_texts(corpus_dir: Path) -> tuple[Iterator[str], int]:
    from starcoder_ls.recipe.corpus import read_corpus

    path = corpus_dir / "train.jsonl" if corpus_dir.is_dir() else corpus_dir
    count = sum(1 for _ in read_corpus(path))
    return (f.text for f in read_corpus(path)), count


def cli_register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "tokenizer",
        help="train a byte-level BPE tokenizer on a corpus",
        description="Train a byte-level BPE tokenizer (StarCoder pre-tokenizer and special "
        "tokens) on the train split of a corpus made by `starcoder-ls recipe corpus`.",
    )
    p.add_argument("corpus", type=Path, help="corpus directory (or its train.jsonl)")
    p.add_argument("--output", "-o", type=Path, required=True, help="where to write tokenizer.json")
    p.add_argument(
        "--vocab-size", type=int, default=8192, help="vocabulary size incl. special tokens"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cli_run)


def _cli_run(args: argparse.Namespace) -> int:
    texts, count = _corpus_texts(args.corpus)
    if count == 0:
        raise RecipeError(f"the corpus {args.corpus} is empty: nothing to train a tokenizer on")
    tok = train_tokenizer(texts, args.vocab_size, length=count, progress=not args.no_progress)
    out = args.output / TOKENIZER_FILE if args.output.suffix != ".json" else args.output
    tok.save(out)
    print(json.dumps({"tokenizer": str(out), "vocab_size": tok.vocab_size, "files": count}))
    return 0
