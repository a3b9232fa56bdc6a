"""Secrets out of prompts: credentials in the user's code are replaced by a placeholder before
a prompt leaves the machine.

Detection is `detect-secrets <https://github.com/Yelp/detect-secrets>`_'s (pinned): the
provider patterns of its regex plugins (AWS, GitHub, GitLab, Slack, Stripe, SendGrid, Twilio,
npm, PyPI, JWT, Discord, Telegram, Azure, Mailchimp, OpenAI, basic-auth URLs, ...), and its
keyword and high-entropy-string plugins with its false-positive filters (UUIDs, indirect
references such as ``os.environ[...]``, templates, sequences, lock files). Added here, because
that release lacks them: private-key blocks across lines (and their base64 body lines when a
window starts inside one), and a few provider prefixes listed in :data:`EXTRA_PATTERNS`.

What is masked: the secret's characters, replaced by :data:`PLACEHOLDER`, the rest of the line
kept (``password = "<REDACTED>"``), so the model still sees the code's shape.

Cost: detection works line by line and every line's answer is cached by its text (and the
file's type), so a keystroke costs one new line's scan; a prompt's other lines, in-file and
cross-file, are cache hits.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import PurePosixPath
from typing import Any

log = logging.getLogger(__name__)

PLACEHOLDER = "<REDACTED>"
CACHE_LINES = 65_536
MAX_LINE_CHARS = 4_096
"""Longer lines (minified code, data) are scanned in pieces of this size."""

EXTRA_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("Hugging Face token", re.compile(r"\bhf_[A-Za-z0-9]{30,}")),
    ("Google API key", re.compile(r"\bAIza[0-9A-Za-z_\-]{35}")),
    ("Google OAuth token", re.compile(r"\bya29\.[0-9A-Za-z_\-]{20,}")),
    ("Anthropic key", re.compile(r"\bsk-ant-[A-Za-z0-9_\-]{20,}")),
    # OpenAI project, service-account and admin keys, and legacy keys without the marker.
    (
        "OpenAI key",
        re.compile(r"\bsk-(?:proj-|svcacct-|admin-)?(?=[A-Za-z0-9_\-]*\d)[A-Za-z0-9_\-]{32,}"),
    ),
    ("GitHub fine-grained token", re.compile(r"\bgithub_pat_[A-Za-z0-9_]{22,}")),
    ("npm token", re.compile(r"\bnpm_[A-Za-z0-9]{36}\b")),
    ("DigitalOcean token", re.compile(r"\bdo[opr]_v1_[a-f0-9]{64}\b")),
    ("Shopify token", re.compile(r"\bshp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}\b")),
    ("Stripe restricted or test key", re.compile(r"\b[rs]k_(?:test|live)_[0-9a-zA-Z]{20,}")),
    # detect-secrets' JWT pattern stops after the payload; this one takes the signature too.
    ("JSON Web Token", re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")),
    ("Authorization header", re.compile(r"(?i)\b(?:Basic|Bearer)\s+([A-Za-z0-9+/_.~\-]{20,}=*)")),
)
"""Provider patterns detect-secrets 1.5 does not have, each a documented token format."""

_WORD = re.compile(r"\w")
_PEM_BEGIN = re.compile(r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----")
_PEM_END = re.compile(r"-----END[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----")
_BASE64_LINE = re.compile(r"^\s*[\"']?([A-Za-z0-9+/]{40,}={0,2})[\"']?,?\s*$")
_NAME_LIKE = re.compile(
    r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+|[a-z]+(?:[/._-][a-z]+)+|[A-Za-z][a-z]+(?:[A-Z][a-z]+)+"
)
"""A keyword's value that names something rather than being a credential: an environment
variable (``API_KEY_ENV = "OPENAI_API_KEY"``), lowercase words with separators
(``secret_name = "prod/db"``, ``CLIENT_SECRET = "client_secret"``), or a camel-case name
(``policyName = "apiKeyAuthenticationPolicy"``). Digits or symbols keep a value a suspect."""
_COMPARED = re.compile(r"[!=]==?\s*[\"']([a-z]+)[\"']")
"""``apiKeyLocation !== "header"``: a word compared against, not a credential held."""
_UNSCANNED = frozenset({"IPPublicDetector", "PrivateKeyDetector", "JwtTokenDetector"})
"""Public IP addresses are not credentials; key blocks are handled across lines here; the
JWT pattern, which detect-secrets confirms by decoding (``publicKeyJwk.alg`` matches it), is
replaced by :data:`EXTRA_PATTERNS`' stricter one."""


def _entropy(text: str) -> float:
    counts: dict[str, int] = {}
    for ch in text:
        counts[ch] = counts.get(ch, 0) + 1
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


class _Detector:
    """detect-secrets configured once for this process: its regex plugins' patterns (matched
    here, to mask whole tokens) and its keyword and entropy plugins (through its own line
    pipeline, filters included)."""

    def __init__(self) -> None:
        from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
        from detect_secrets.plugins.base import RegexBasedDetector
        from detect_secrets.settings import cache_bust, configure_settings_from_baseline

        classes: list[Any] = list(get_mapping_from_secret_type_to_class().values())
        self.patterns: list[tuple[str, re.Pattern[str]]] = [
            (cls.secret_type, regex)
            for cls in classes
            if issubclass(cls, RegexBasedDetector) and cls.__name__ not in _UNSCANNED
            for regex in cls.denylist
        ]
        self.patterns += EXTRA_PATTERNS
        pipeline: list[dict[str, object]] = [
            {"name": cls.__name__}
            for cls in classes
            if not issubclass(cls, RegexBasedDetector) and cls.__name__ not in _UNSCANNED
        ]
        for plugin in pipeline:  # detect-secrets' defaults
            if plugin["name"] == "Base64HighEntropyString":
                plugin["limit"] = 4.5
            elif plugin["name"] == "HexHighEntropyString":
                plugin["limit"] = 3.0
        cache_bust()
        configure_settings_from_baseline({"plugins_used": pipeline})
        from detect_secrets.core import scan

        self._scan = scan._process_line_based_plugins

    def spans(self, line: str, filename: str) -> list[tuple[int, int]]:
        if "pragma: allowlist secret" in line:
            return []  # detect-secrets' marker for a known non-secret (a test fixture)
        found: list[tuple[int, int]] = []
        for _, regex in self.patterns:
            for m in regex.finditer(line):
                at = m.start()
                if at and _WORD.match(line, at - 1) and _WORD.match(line, at):
                    continue  # inside an identifier (``keyAKIA...`` is not a token's start)
                found.append(_secret_span(m))
        for secret in self._scan([(1, line)], filename):
            value = secret.secret_value
            if not value or len(value) < 4:
                continue
            if (
                secret.type == "Secret Keyword"
                and (
                    _NAME_LIKE.fullmatch(value)
                    # a word the key's own name holds: GRANT_TYPE_PASSWORD = "password"
                    or (value.isalpha() and value in line[: line.rfind(value)].lower())
                    or any(m.group(1) == value for m in _COMPARED.finditer(line))
                )
            ):
                continue
            start = line.find(value)
            while start != -1:
                end = start + len(value)
                # Whole occurrences only: "password" is masked in `= "password"`, not in the
                # identifier `db_password`.
                inside = (start and _WORD.match(line, start - 1) and _WORD.match(value)) or (
                    end < len(line) and _WORD.match(line, end) and _WORD.match(value[-1])
                )
                if not inside:
                    found.append((start, end))
                start = line.find(value, end)
        body = _BASE64_LINE.match(line)
        if body and _entropy(body.group(1)) >= 4.0:
            found.append(body.span(1))
        return found


def _secret_span(m: re.Match[str]) -> tuple[int, int]:
    """The part of a match to mask: its group when the group is the secret after a keyword
    (``aws_secret = "(...)"``, ``://user:(password)@``), otherwise the whole token (a group
    that is just the token's prefix, like GitHub's ``(ghp)_...``, does not count)."""
    if m.re.groups:
        for i in range(m.re.groups, 0, -1):
            start, end = m.span(i)
            if start > m.start() and end - start >= 4:
                return start, end
    return m.span()


def _merge(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(s for s in spans if s[1] > s[0]):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _apply(text: str, spans: list[tuple[int, int]], dropped: list[bool] | None = None) -> str:
    """``text`` with each span replaced by the placeholder (or by nothing, where ``dropped``)."""
    out, at = [], 0
    for i, (start, end) in enumerate(spans):
        out.append(text[at:start])
        out.append("" if dropped and dropped[i] else PLACEHOLDER)
        at = end
    out.append(text[at:])
    return "".join(out)


class Redactor:
    """Replaces secrets in text with :data:`PLACEHOLDER`; thread-safe, with a line cache."""

    def __init__(self, cache_lines: int = CACHE_LINES) -> None:
        self._cache: OrderedDict[tuple[str, str], tuple[tuple[int, int], ...]] = OrderedDict()
        self._capacity = cache_lines
        self._lock = threading.Lock()
        self._detector: _Detector | None = None
        self.scanned = 0
        """Lines scanned (cache misses), for the benchmark."""
        self.masked = 0
        """Secrets replaced so far."""

    def _spans(self, line: str, kind: str) -> tuple[tuple[int, int], ...]:
        key = (kind, line)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
            if self._detector is None:
                self._detector = _Detector()
            detector = self._detector
        found: list[tuple[int, int]] = []
        for at in range(0, max(len(line), 1), MAX_LINE_CHARS):
            piece = line[at : at + MAX_LINE_CHARS]
            if len(piece.strip()) >= 8:
                found += [(s + at, e + at) for s, e in detector.spans(piece, kind)]
        spans = tuple(_merge(found))
        with self._lock:
            self.scanned += 1
            self._cache[key] = spans
            if len(self._cache) > self._capacity:
                self._cache.popitem(last=False)
        return spans

    def line_spans(self, line: str, path: str | None) -> tuple[tuple[int, int], ...]:
        return self._spans(line, _kind(path))

    def redact(self, text: str, path: str | None = None) -> str:
        """``text`` with its secrets masked (``path`` tells detect-secrets the file's type)."""
        if not text:
            return text
        kind = _kind(path)
        lines = text.split("\n")
        out: list[str] = []
        changed = False
        inside_key = False
        for line in lines:
            if inside_key or _PEM_BEGIN.search(line):
                masked, inside_key = _mask_key_block(line, inside_key)
                if masked != line:
                    changed = True
                    self.masked += 1
                out.append(masked)
                continue
            spans = self._spans(line, kind)
            if spans:
                changed = True
                self.masked += len(spans)
                out.append(_apply(line, list(spans)))
            else:
                out.append(line)
        return "\n".join(out) if changed else text

    def redact_around(self, prefix: str, suffix: str, path: str | None) -> tuple[str, str]:
        """Redact a prefix and a suffix that meet at the cursor: the cursor's line is scanned
        whole, so a secret that the cursor splits is found, and masked on both sides."""
        head, _, left = prefix.rpartition("\n")
        right, newline, tail = suffix.partition("\n")
        line = left + right
        if _PEM_BEGIN.search(prefix) or _PEM_BEGIN.search(suffix):
            # A key block: mask per block over the joined text, then split at the cursor.
            whole = self.redact(prefix + "\x00" + suffix, path)
            before, _, after = whole.partition("\x00")
            return before, after
        spans = self._spans(line, _kind(path))
        if spans:
            self.masked += len(spans)
            cut = len(left)
            # A secret the cursor splits: its placeholder goes on the left, its rest is dropped.
            left = _apply(left, [(s, min(e, cut)) for s, e in spans if s < cut])
            right = _apply(
                right,
                [(max(s, cut) - cut, e - cut) for s, e in spans if e > cut],
                dropped=[s < cut for s, e in spans if e > cut],
            )
        head = self.redact(head, path) if head else head
        tail = self.redact(tail, path) if tail else tail
        new_prefix = f"{head}\n{left}" if "\n" in prefix else left
        return new_prefix, right + newline + tail


def _kind(path: str | None) -> str:
    """The file name detect-secrets sees: only the extension matters to it."""
    suffix = PurePosixPath(path).suffix if path else ""
    return f"x{suffix}" if suffix else "x.txt"


def _mask_key_block(line: str, inside: bool) -> tuple[str, bool]:
    """One line of text that is in a private-key block or starts one; returns the masked line
    and whether the block goes on after it."""
    out = []
    at = 0
    while True:
        if not inside:
            begin = _PEM_BEGIN.search(line, at)
            if begin is None:
                out.append(line[at:])
                return "".join(out), False
            out.append(line[at : begin.end()])
            at = begin.end()
            inside = True
        end = _PEM_END.search(line, at)
        if end is None:
            body = line[at:]
            out.append(PLACEHOLDER if body.strip() else body)
            return "".join(out), True
        if line[at : end.start()].strip():
            out.append(PLACEHOLDER)
        out.append(line[end.start() : end.end()])
        at = end.end()
        inside = False
