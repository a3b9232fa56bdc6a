"""Token shards: FIM-transformed documents packed into fixed-length rows on disk.

Rows are stored as 2-D ``numpy`` memmaps (``rows x seq_len``), a few thousand rows per shard
file, with a ``meta.json`` that records how they were made. Packing is GPT-style: documents
(ending in ``<|endoftext|>``) are concatenated and cut into rows, so no token is padding.

The loader walks a seeded permutation of the rows per epoch; its whole state is two integers
(epoch, cursor), saved in every checkpoint, so a resumed run sees exactly the batches it would
have seen. Under DDP each rank takes its own slice of every global batch.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from starcoder_ls.prompt.tokens import ENDOFTEXT
from starcoder_ls.recipe.atomic import atomic_path
from starcoder_ls.recipe.errors import RecipeError
from starcoder_ls.recipe.fim import FimConfig, document_pieces, repo_pieces
from starcoder_ls.recipe.tokenizer import CodeTokenizer

META_FILE = "meta.json"
SPLITS = ("train", "validation")


@dataclass
class ShardConfig:
    corpus: Path
    tokenizer: Path
    output: Path
    seq_len: int = 1024
    fim: FimConfig = field(default_factory=FimConfig)
    repo_rate: float = 0.25
    """Share of files (with siblings in their directory) that become repository-level samples."""
    path_rate: float = 0.5
    """Share of single-file documents that start with a ``<file_sep>path`` header."""
    draws: int = 1
    """Times each file is used, each with fresh FIM cuts (cheap data augmentation)."""
    seed: int = 0
    rows_per_shard: int = 4096
    end_token: str = ENDOFTEXT
    """What ends a document: ``<|endoftext|>`` for StarCoder's tokenizers; an adapted model
    keeps its own end token (``<eos>``, ``<|im_end|>``), which the server already stops on."""


@dataclass(frozen=True)
class _File:
    repo: str
    path: str
    text: str


def _chunk(text: str, max_chars: int) -> list[str]:
    """Cut a long file at line boundaries into pieces of at most ``max_chars`` (if lines allow)."""
    if len(text) <= max_chars:
        return [text]
    chunks: list[str] = []
    start = 0
    while start < len(text):
        end = start + max_chars
        if end >= len(text):
            chunks.append(text[start:])
            break
        cut = text.rfind("\n", start, end)
        cut = end if cut <= start else cut + 1
        chunks.append(text[start:cut])
        start = cut
    return chunks


def _chars_per_token(files: Sequence[_File], tok: CodeTokenizer) -> float:
    sample = [f.text for f in files[:200] if f.text]
    if not sample:
        return 3.0
    n_tokens = sum(len(ids) for ids in tok.encode_batch(sample))
    return max(1.0, sum(len(t) for t in sample) / max(1, n_tokens))


def _documents(
    files: Sequence[_File], tok: CodeTokenizer, cfg: ShardConfig, rng: np.random.Generator
) -> list[list[tuple[str, bool]]]:
    """All training documents of one split, as piece lists, in a shuffled order."""
    cpt = _chars_per_token(files, tok)
    max_chars = int(cfg.seq_len * cpt * 0.9)
    groups: dict[tuple[str, str], list[_File]] = defaultdict(list)
    for f in files:
        groups[(f.repo, str(PurePosixPath(f.path).parent))].append(f)
    docs: list[list[tuple[str, bool]]] = []
    for _ in range(cfg.draws):
        for f in files:
            siblings = [
                s for s in groups[(f.repo, str(PurePosixPath(f.path).parent))] if s is not f
            ]
            if siblings and rng.random() < cfg.repo_rate:
                docs.append(_repo_document(f, siblings, max_chars, cfg, rng))
                continue
            for chunk in _chunk(f.text, max_chars):
                header = f.path if rng.random() < cfg.path_rate else None
                docs.append(document_pieces(chunk, rng, cfg.fim, header=header))
    order = rng.permutation(len(docs))
    return [docs[i] for i in order]


def _repo_document(
    f: _File, siblings: Sequence[_File], max_chars: int, cfg: ShardConfig, rng: np.random.Generator
) -> list[tuple[str, bool]]:
    """Target file (one chunk, half the budget) after the heads of up to 3 sibling files."""
    chunks = _chunk(f.text, max_chars // 2)
    target = chunks[int(rng.integers(len(chunks)))]
    budget = max_chars - len(target)
    picks = rng.choice(len(siblings), size=min(3, len(siblings)), replace=False)
    context: list[tuple[str, str]] = []
    for i in picks:
        s = siblings[int(i)]
        share = budget // len(picks)
        if share < 80:
            break
        context.append((s.path, _chunk(s.text, share)[0]))
    return repo_pieces(f.repo, context, f.path, target, rng, cfg.fim)


class _RowWriter:
    """Accumulates a token stream and writes full rows into shard files."""

    def __init__(self, out_dir: Path, seq_len: int, rows_per_shard: int, dtype: np.dtype[Any]):
        self.out_dir = out_dir
        self.seq_len = seq_len
        self.rows_per_shard = rows_per_shard
        self.dtype = dtype
        self.buffer: list[int] = []
        self.pending: list[np.ndarray] = []
        self.shards: list[dict[str, Any]] = []
        self.tokens_in = 0
        out_dir.mkdir(parents=True, exist_ok=True)

    def add(self, ids: Sequence[int]) -> None:
        self.tokens_in += len(ids)
        self.buffer.extend(ids)
        n_rows = len(self.buffer) // self.seq_len
        if n_rows:
            cut = n_rows * self.seq_len
            rows = np.asarray(self.buffer[:cut], dtype=self.dtype).reshape(n_rows, self.seq_len)
            del self.buffer[:cut]
            self.pending.append(rows)
            if sum(len(r) for r in self.pending) >= self.rows_per_shard:
                self._flush(final=False)

    def _flush(self, final: bool) -> None:
        if not self.pending:
            return
        rows = np.concatenate(self.pending)
        self.pending = []
        while len(rows) >= self.rows_per_shard or (final and len(rows)):
            part, rows = rows[: self.rows_per_shard], rows[self.rows_per_shard :]
            name = f"shard-{len(self.shards):05d}.bin"
            part.tofile(self.out_dir / name)
            self.shards.append({"file": name, "rows": len(part)})
        if len(rows):
            self.pending.append(rows)

    def close(self) -> dict[str, Any]:
        self._flush(final=True)
        return {
            "shards": self.shards,
            "rows": sum(s["rows"] for s in self.shards),
            "tokens": sum(s["rows"] for s in self.shards) * self.seq_len,
            "tokens_dropped": len(self.buffer),
        }


def build_shards(cfg: ShardConfig, *, progress: bool = True) -> dict[str, Any]:
    """Tokenize the corpus splits with FIM and pack them into shards under ``cfg.output``."""
    from starcoder_ls.recipe.corpus import read_corpus

    tok = CodeTokenizer.load(cfg.tokenizer)
    tok.token_id(cfg.end_token)  # a tokenizer without it is an error now, not mid-way
    dtype = np.dtype(np.uint16 if tok.vocab_size <= 65536 else np.uint32)
    meta: dict[str, Any] = {
        "seq_len": cfg.seq_len,
        "dtype": dtype.name,
        "vocab_size": tok.vocab_size,
        "tokenizer_sha256": hashlib.sha256(
            Path(_tokenizer_file(cfg.tokenizer)).read_bytes()
        ).hexdigest(),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
        "splits": {},
    }
    with atomic_path(cfg.output, directory=True) as tmp:
        for split_index, split in enumerate(SPLITS):
            src = Path(cfg.corpus) / f"{split}.jsonl"
            files = [_File(f.repo, f.path, f.text) for f in read_corpus(src)]
            if split == "train" and not files:
                raise RecipeError(f"the corpus split {src} is empty: nothing to train on")
            rng = np.random.default_rng([cfg.seed, split_index])
            docs = _documents(files, tok, cfg, rng)
            writer = _RowWriter(tmp / split, cfg.seq_len, cfg.rows_per_shard, dtype)
            for ids in _encode_documents(
                docs, tok, progress=progress, label=split, end_token=cfg.end_token
            ):
                writer.add(ids)
            info = writer.close()
            info.update(files=len(files), documents=len(docs))
            meta["splits"][split] = info
        (tmp / "tokenizer.json").write_bytes(Path(_tokenizer_file(cfg.tokenizer)).read_bytes())
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def _tokenizer_file(path: Path) -> Path:
    path = Path(path)
    return path / "tokenizer.json" if path.is_dir() else path


def _encode_documents(
    docs: Sequence[list[tuple[str, bool]]],
    tok: CodeTokenizer,
    *,
    progress: bool,
    label: str,
    end_token: str = ENDOFTEXT,
) -> Iterator[list[int]]:
    """Encode documents in batches: ``encode_batch`` tokenizes on all cores. A document's end
    (``<|endoftext|>`` in the pieces) is written as ``end_token``."""
    ids_of = {ENDOFTEXT: tok.token_id(end_token)}
    from starcoder_ls.progress import progress_bar

    batch = 512
    with progress_bar(progress) as bar:
        task = bar.add_task(f"tokenizing {label}", total=len(docs))
        for start in range(0, len(docs), batch):
            group = docs[start : start + batch]
            texts = [text for doc in group for text, special in doc if not special and text]
            encoded = iter(tok.encode_batch(texts))
            for doc in group:
                ids: list[int] = []
                for text, special in doc:
                    if special:
                        if text not in ids_of:
                            ids_of[text] = tok.token_id(text)
                        ids.append(ids_of[text])
                    elif text:
                        ids.extend(next(encoded))
                yield ids
            bar.advance(task, len(group))


def read_meta(data_dir: Path) -> dict[str, Any]:
    path = Path(data_dir) / META_FILE
    if not path.is_file():
        raise RecipeError(
            f"no token shards in {data_dir} (missing {META_FILE}); make them with `starcoder-ls recipe shards`"
        )
    try:
        meta: dict[str, Any] = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise RecipeError(f"{path} is corrupt: {exc}") from exc
    return meta


class ShardLoader:
    """Deterministic, exactly resumable batches of rows from one split.

    Every epoch walks ``permutation(n_rows)`` drawn from ``seed`` and the epoch number. A global
    batch is ``batch_size * world_size`` consecutive entries of that order; rank ``r`` takes
    the ``r``-th slice. A final partial global batch is dropped so all ranks stay in step.
    """

    def __init__(
        self,
        data_dir: Path,
        split: str,
        batch_size: int,
        *,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ):
        meta = read_meta(data_dir)
        if split not in meta["splits"]:
            raise RecipeError(f"{data_dir} has no split {split!r}")
        info = meta["splits"][split]
        self.seq_len = int(meta["seq_len"])
        dtype = np.dtype(meta["dtype"])
        self.maps = [
            np.memmap(
                Path(data_dir) / split / s["file"],
                dtype=dtype,
                mode="r",
                shape=(s["rows"], self.seq_len),
            )
            for s in info["shards"]
        ]
        self.offsets = np.cumsum([0] + [int(s["rows"]) for s in info["shards"]])
        self.n_rows = int(self.offsets[-1])
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        if self.n_rows < batch_size * world_size:
            raise RecipeError(
                f"the {split} split of {data_dir} has {self.n_rows} rows, fewer than one global batch "
                f"({batch_size} x {world_size}); use a smaller batch or more data"
            )
        self.epoch = 0
        self.cursor = 0
        self._order = self._permutation(0)

    def _permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.n_rows)

    def row(self, index: int) -> np.ndarray:
        shard = int(np.searchsorted(self.offsets, index, side="right")) - 1
        return np.asarray(self.maps[shard][index - self.offsets[shard]])

    def next_batch(self) -> np.ndarray:
        global_batch = self.batch_size * self.world_size
        if self.cursor + global_batch > self.n_rows:
            self.epoch += 1
            self.cursor = 0
            self._order = self._permutation(self.epoch)
        start = self.cursor + self.rank * self.batch_size
        rows = [self.row(int(i)) for i in self._order[start : start + self.batch_size]]
        self.cursor += global_batch
        return np.stack(rows).astype(np.int64)

    def state_dict(self) -> dict[str, int]:
        return {
            "epoch": self.epoch,
            "cursor": self.cursor,
            "seed": self.seed,
            "world_size": self.world_size,
        }

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch = int(state["epoch"])
        self.cursor = int(state["cursor"])
        self._order = self._permutation(self.epoch)

    def iter_all(self) -> Iterator[np.ndarray]:
        """Every row once, in file order, in batches (for validation)."""
        for start in range(0, self.n_rows, self.batch_size):
            idx = range(start, min(start + self.batch_size, self.n_rows))
            yield np.stack([self.row(i) for i in idx]).astype(np.int64)


def cli_register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "shards",
        help="tokenize a corpus with FIM into token shards",
        description="Apply the FIM transform (bigcode's character-level PSM/SPM, plus repository-"
        "level samples) to a corpus and pack the tokens into fixed-length rows on disk.",
    )
    p.add_argument(
        "corpus", type=Path, help="corpus directory made by `starcoder-ls recipe corpus`"
    )
    p.add_argument("--tokenizer", type=Path, required=True, help="tokenizer.json (or its folder)")
    p.add_argument("--output", "-o", type=Path, required=True, help="output directory")
    p.add_argument("--seq-len", type=int, default=1024)
    p.add_argument("--fim-rate", type=float, default=0.5)
    p.add_argument("--spm-rate", type=float, default=0.5)
    p.add_argument(
        "--line-rate", type=float, default=0.0, help="share of FIM cuts moved to line starts"
    )
    p.add_argument(
        "--span-rate",
        type=float,
        default=0.0,
        help="share of FIM middles that are editor-style spans",
    )
    p.add_argument("--repo-rate", type=float, default=0.25)
    p.add_argument("--path-rate", type=float, default=0.5)
    p.add_argument("--draws", type=int, default=1, help="FIM draws per file")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cli_run)


def _cli_run(args: argparse.Namespace) -> int:
    cfg = ShardConfig(
        corpus=args.corpus,
        tokenizer=args.tokenizer,
        output=args.output,
        seq_len=args.seq_len,
        fim=FimConfig(args.fim_rate, args.spm_rate, args.line_rate, args.span_rate),
        repo_rate=args.repo_rate,
        path_rate=args.path_rate,
        draws=args.draws,
        seed=args.seed,
    )
    meta = build_shards(cfg, progress=not args.no_progress)
    print(
        json.dumps(
            {s: {k: v for k, v in i.items() if k != "shards"} for s, i in meta["splits"].items()}
        )
    )
    return 0
