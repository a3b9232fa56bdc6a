"""Exact and near-duplicate detection, and decontamination against evaluation files.

Duplicates inflate the weight of whatever was copied most (licence headers, vendored helpers,
generated boilerplate) and make a model memorise instead of generalise; BigCode removed them
from The Stack with exact hashing plus MinHash LSH, and this module follows that recipe.

MinHash signatures are the ones ``datasketch.MinHash`` computes (``affine32`` scheme, seeded
permutations) for a set of 32-bit shingle hashes; they are computed here with one vectorised
numpy expression per file because feeding millions of shingles one by one through
``MinHash.update_batch`` is the slowest part of the whole stage. ``datasketch.MinHashLSH``
still does the banding and candidate lookup, and a test pins the signatures to datasketch's.
"""

from __future__ import annotations

import hashlib
import json
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from datasketch import LeanMinHash, MinHash, MinHashLSH

from starcoder_ls.recipe.errors import RecipeError

NUM_PERM = 128
SHINGLE_SIZE = 5
MINHASH_SEED = 1
DECONTAMINATION_WINDOW = 8

_WORD_RE = re.compile(r"[A-Za-z_0-9]+")
# Odd 64-bit multiplier for the polynomial that folds a 5-gram of token hashes into one value.
_POLY = np.uint64(0x9E3779B97F4A7C15)
_MASK32 = np.uint64(0xFFFFFFFF)
_CHUNK = 8192  # shingles per block, so a 1 MB file never needs a (n x 128) temporary of 100+ MB


def normalize_text(text: str) -> str:
    """Text as compared for exact duplicates: the same file saved with CRLF line ends, trailing
    spaces or an extra final newline is still the same file."""
    return "\n".join(line.rstrip() for line in text.splitlines()).strip("\n")


def exact_hash(text: str) -> str:
    return hashlib.sha256(normalize_text(text).encode("utf-8")).hexdigest()


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's finaliser, exactly as datasketch applies it to inputs of ``affine32``."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


class _TokenHashes(dict[str, int]):
    """A cache of stable 32-bit token hashes (CRC32: fast, and identical on every machine, unlike
    Python's salted ``hash``); a corpus repeats the same identifiers millions of times."""

    def __missing__(self, token: str) -> int:
        value = zlib.crc32(token.encode("ascii"))
        self[token] = value
        return value


@dataclass
class MinHasher:
    """Shingles a text into word 5-grams and returns its MinHash signature (or None when the
    text has no word tokens at all, as such a file can only be an exact duplicate)."""

    num_perm: int = NUM_PERM
    seed: int = MINHASH_SEED
    _tokens: _TokenHashes = field(default_factory=_TokenHashes, repr=False)

    def __post_init__(self) -> None:
        self._template = MinHash(num_perm=self.num_perm, seed=self.seed, scheme="affine32")
        self._a, self._b = self._template.permutations

    def shingle_hashes(self, text: str) -> np.ndarray:
        """32-bit hashes of the set of word 5-grams (the whole token list when it is shorter)."""
        words = _WORD_RE.findall(text)
        if not words:
            return np.empty(0, dtype=np.uint32)
        ids = np.fromiter(map(self._tokens.__getitem__, words), dtype=np.uint64, count=len(words))
        n = min(SHINGLE_SIZE, len(ids))
        count = len(ids) - n + 1
        acc = np.zeros(count, dtype=np.uint64)
        for k in range(n):
            acc = acc * _POLY + ids[k : k + count]
        folded = (acc ^ (acc >> np.uint64(32))) & _MASK32
        return np.unique(folded.astype(np.uint32))

    def signature(self, text: str) -> LeanMinHash | None:
        hashes = self.shingle_hashes(text)
        if hashes.size == 0:
            return None
        values = np.full(self.num_perm, np.iinfo(np.uint32).max, dtype=np.uint32)
        for start in range(0, hashes.size, _CHUNK):
            mixed = _fmix32(hashes[start : start + _CHUNK])[:, None]
            values = np.minimum(values, (mixed * self._a + self._b).min(axis=0))
        return LeanMinHash(seed=self.seed, hashvalues=values, scheme="affine32")


class NearDupIndex:
    """MinHash LSH over the signatures kept so far.

    LSH only proposes candidates (a banding false positive is possible), so each candidate's
    estimated Jaccard similarity is checked against the threshold before a file is called a
    near duplicate.
    """

    def __init__(self, threshold: float, num_perm: int = NUM_PERM) -> None:
        self.threshold = threshold
        self._lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self._signatures: dict[str, LeanMinHash] = {}

    def __len__(self) -> int:
        return len(self._signatures)

    def __contains__(self, key: object) -> bool:
        return key in self._signatures

    def find(self, signature: LeanMinHash) -> str | None:
        """The first (in key order) indexed key similar enough to ``signature``, if any."""
        for key in sorted(self._lsh.query(signature)):
            if self._signatures[key].jaccard(signature) >= self.threshold:
                return key
        return None

    def add(self, key: str, signature: LeanMinHash) -> None:
        self._lsh.insert(key, signature, check_duplication=False)
        self._signatures[key] = signature


def _content_lines(text: str) -> list[str]:
    return [stripped for line in text.splitlines() if (stripped := line.strip())]


class Contamination:
    """Evaluation files a training file must not reproduce.

    A file is contaminated when it is an exact or near duplicate of an evaluation file, or when
    it contains any run of 8 consecutive non-blank lines (compared without surrounding
    whitespace) of one: a benchmark solution pasted into a larger file is still a leak.
    """

    def __init__(self, documents: Iterable[tuple[str, str]], threshold: float, hasher: MinHasher):
        self._exact: dict[str, str] = {}
        self._near = NearDupIndex(threshold, hasher.num_perm)
        self._windows: dict[tuple[str, ...], str] = {}
        self._window_starts: set[str] = set()
        for name, text in documents:
            self._exact.setdefault(exact_hash(text), name)
            signature = hasher.signature(text)
            if signature is not None and name not in self._near:
                self._near.add(name, signature)
            lines = _content_lines(text)
            for i in range(len(lines) - DECONTAMINATION_WINDOW + 1):
                window = tuple(lines[i : i + DECONTAMINATION_WINDOW])
                self._windows.setdefault(window, name)
                self._window_starts.add(window[0])

    def __len__(self) -> int:
        return len(self._exact)

    def match(self, text: str, digest: str, signature: LeanMinHash | None) -> str | None:
        """Why ``text`` is contaminated ("exact: NAME", "near: NAME", "lines: NAME") or None."""
        if digest in self._exact:
            return f"exact: {self._exact[digest]}"
        if signature is not None and (hit := self._near.find(signature)) is not None:
            return f"near: {hit}"
        if self._windows:
            lines = _content_lines(text)
            starts = self._window_starts
            for i in range(len(lines) - DECONTAMINATION_WINDOW + 1):
                if lines[i] in starts:
                    window = tuple(lines[i : i + DECONTAMINATION_WINDOW])
                    if window in self._windows:
                        return f"lines: {self._windows[window]}"
        return None


def eval_documents(
    paths: Iterable[str], skip_dirs: frozenset[str] = frozenset()
) -> Iterator[tuple[str, str]]:
    """(name, text) of every evaluation file under ``paths``.

    A ``.jsonl`` benchmark (HumanEval style) also yields each record's string fields and its
    prompt + canonical solution joined, since that is how its code would appear in a source file.
    """
    for spec in paths:
        path = Path(spec).expanduser()
        if not path.exists():
            raise RecipeError(f"evaluation path {spec} does not exist")
        files = [path]
        if path.is_dir():
            files = sorted(
                p for p in path.rglob("*")
                if p.is_file() and not skip_dirs.intersection(p.relative_to(path).parts[:-1])
            )  # fmt: skip
        for file in files:
            try:
                text = file.read_bytes().decode("utf-8")
            except OSError as exc:
                raise RecipeError(f"cannot read evaluation file {file}: {exc.strerror}") from exc
            except UnicodeDecodeError as exc:
                if file == path:
                    raise RecipeError(f"evaluation file {file} is not UTF-8 text") from exc
                continue  # a binary inside an evaluation directory: nothing to match against
            yield str(file), text
            if file.suffix == ".jsonl":
                yield from _jsonl_fields(str(file), text)


def _jsonl_fields(name: str, text: str) -> Iterator[tuple[str, str]]:
    for number, line in enumerate(text.splitlines(), 1):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict):
            continue
        for key, value in record.items():
            if isinstance(value, str) and value.strip():
                yield f"{name}:{number}:{key}", value
        prompt, solution = record.get("prompt"), record.get("canonical_solution")
        if isinstance(prompt, str) and isinstance(solution, str):
            yield f"{name}:{number}", prompt + solution
