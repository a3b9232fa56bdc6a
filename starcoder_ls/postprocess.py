"""From a raw generation to the text inserted at the cursor.

A model asked for the middle of a file does not know where that middle should end: it leaks
special tokens, runs past the block the cursor is in, rewrites code that is already below the
cursor, or loops. Each step fixes one of those, and why:

1. ``strip_special_tokens``: FIM/end tokens are not code; text after one belongs elsewhere.
2. ``cut_at_stop``: stop strings end the generation even where a backend ignored them.
3. ``first_line``: a single-line request must not push the rest of the file down;
   ``skip_blank_lines``: on a blank line (an empty function body) a multi-line completion
   starts on that line, not below it, and one whose first code is a dedent left the block.
4. ``dedup_indentation``: the model may re-emit indentation the user has already typed.
5. ``drop_repetition``: a loop (a line or a short period repeated) is never wanted code.
6. ``limit_scope``: output past the end of the current block is a guess about unrelated code.
7. ``dedup_suffix_lines``: the lines below the cursor are already in the file.
8. ``dedup_rest_of_line``: so is the rest of the current line (``)``, ``):``).
9. ``balance_brackets``: a closer the rest of the line already has, or one that closes nothing
   on this line, breaks the code.
10. ``drop_trailing_blank_lines`` and whitespace-only results: nothing worth accepting.
11. ``adds_syntax_errors`` (optional): reject what makes the file parse worse.

:func:`postprocess` repeats steps 1-10 until nothing changes. Every step only cuts, so the
result is always a contiguous piece of the raw text and post-processing it again is a no-op.
"""

from __future__ import annotations

import functools
import logging
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from starcoder_ls.types import CompletionMode

log = logging.getLogger(__name__)

SPECIAL_TOKENS: tuple[str, ...] = (
    # StarCoder, StarCoderBase, StarCoder2 and the bundled model
    "<|endoftext|>", "<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<fim_pad>", "<filename>",
    "<gh_stars>", "<issue_start>", "<issue_comment>", "<issue_closed>", "<jupyter_start>",
    "<jupyter_text>", "<jupyter_code>", "<jupyter_output>", "<jupyter_script>",
    "<empty_output>", "<code_to_intermediate>", "<intermediate_to_code>", "<commit_before>",
    "<commit_msg>", "<commit_after>", "<reponame>", "<repo_name>", "<file_sep>", "<pr>",
    "<pr_status>", "<pr_is_merged>", "<pr_base>", "<pr_file>", "<pr_base_code>", "<pr_diff>",
    "<pr_diff_hunk>", "<pr_comment>", "<pr_event_id>", "<pr_review>", "<pr_review_state>",
    "<pr_review_comment>", "<pr_in_reply_to_review_id>", "<pr_in_reply_to_comment_id>",
    "<pr_diff_hunk_comment_line>",
    # SantaCoder
    "<fim-prefix>", "<fim-middle>", "<fim-suffix>", "<fim-pad>",
    # DeepSeek-Coder
    "<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>", "<｜end▁of▁sentence｜>",
    "<｜begin▁of▁sentence｜>", "<|EOT|>",
    # Qwen2.5-Coder, CodeGemma, Llama 3 chat leftovers
    "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>",
    "<|file_sep|>", "<|file_separator|>", "<|im_start|>", "<|im_end|>", "<|end_of_text|>",
    "<|eot_id|>", "<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>",
)  # fmt: skip
"""Exact spellings only, so ``<div>`` or ``List<String>`` are never touched. Llama's ``<s>`` and
``</s>`` are left out on purpose: they are HTML's strikethrough tags."""

CODELLAMA_TOKENS = ("<PRE>", "<SUF>", "<MID>", "<EOT>")
"""CodeLlama's sentinels detokenize with a leading space, which goes with them."""

_SPECIAL = re.compile(
    "|".join(
        [" ?" + re.escape(t) for t in CODELLAMA_TOKENS]
        + [re.escape(t) for t in sorted(SPECIAL_TOKENS, key=len, reverse=True)]
    )
)
_NEWLINE = re.compile(r"[\r\n]")
_CONTENT_LINE = re.compile(r"[^\r\n]*\S[^\r\n]*")
_TRAILING_BLANK = re.compile(r"(?:\n[^\S\n]*)+\Z")
_CLOSING_LINE = re.compile(r"^\s*[)\]}][)\]};,\s]*$")
_OPENS = re.compile(r"(?:[:{(\[,\\=+\-*/|&]|=>|->|\bdo|\bthen|\bbegin|\belse)\s*$")
"""The end of a line after which the next one may be indented one level deeper."""
_TRAILING_COMMENT = re.compile(r"\s(?:#|//|--)[^'\"]*$")
_RUST_CHAR = re.compile(r"'(?:\\[^']{1,10}|[^\\'\n])'")
_OPENERS, _CLOSERS = "([{", ")]}"
_PAIR = {")": "(", "]": "[", "}": "{"}
_SUFFIX_WINDOW = 20_000
_PREFIX_WINDOW = 8_000
_SYNTAX_WINDOW = 16_000


@dataclass(frozen=True)
class Context:
    """The cursor's surroundings as the steps see them."""

    prefix: str
    cur: str
    """The current line up to the cursor."""
    rest: str
    """The current line after the cursor."""
    below: tuple[str, ...]
    """The suffix's lines after the current one (a bounded window)."""
    language: str | None = None

    @classmethod
    def of(cls, prefix: str, suffix: str, language: str | None = None) -> Context:
        head = suffix[:_SUFFIX_WINDOW]
        rest, _, below = head.partition("\n")
        cur = prefix[prefix.rfind("\n") + 1 :]
        return cls(prefix, cur, rest.rstrip("\r"), tuple(below.split("\n")), language)

    @property
    def line_blank(self) -> bool:
        return not (self.cur + self.rest).strip()

    @functools.cached_property
    def unclosed(self) -> int:
        """Brackets the prefix leaves open that the suffix does not close (both windowed)."""
        head = self.prefix[-_PREFIX_WINDOW:]
        if len(head) < len(self.prefix):
            head = head[head.find("\n") + 1 :]
        below = "\n".join((self.rest, *self.below))[:_PREFIX_WINDOW]
        closed = sum(1 for _, o in _match(below, self.language)[0] if o is None)
        return _match(head, self.language)[1] - closed


def postprocess(
    raw: str,
    *,
    prefix: str,
    suffix: str,
    mode: CompletionMode,
    stop: Sequence[str] = (),
    language: str | None = None,
    check_syntax: bool = False,
    left_to_right: bool = False,
) -> str:
    """The text to insert at the cursor, or "" when nothing useful is left.

    ``left_to_right``: the model never saw the suffix (a family without FIM), so it writes on
    past the cursor's gap as a matter of course; the completion ends at the first line that is
    the suffix's next line, however short."""
    if mode == CompletionMode.NONE or not raw:
        return ""
    ctx = Context.of(prefix, suffix, language)
    stops = tuple(s for s in stop if s)
    text = raw
    while True:
        new = _one_pass(text, ctx, mode, stops, left_to_right)
        if new == text or len(new) >= len(text):
            break
        text = new
    if text and check_syntax and adds_syntax_errors(prefix, text, suffix, language):
        return ""
    return text


def _one_pass(
    text: str, ctx: Context, mode: CompletionMode, stops: tuple[str, ...], left_to_right: bool
) -> str:
    text = cut_at_stop(strip_special_tokens(text), stops)
    if mode == CompletionMode.SINGLE_LINE:
        text = first_line(text, ctx)
    else:
        text = skip_blank_lines(text, ctx)
    text = drop_repetition(dedup_indentation(text, ctx), ctx.cur)
    if mode == CompletionMode.MULTI_LINE:
        text = limit_scope(text, ctx)
    text = dedup_rest_of_line(dedup_suffix_lines(text, ctx, strict=left_to_right), ctx)
    text = drop_trailing_blank_lines(balance_brackets(text, ctx), ctx)
    return text if text.strip() else ""


def strip_special_tokens(text: str) -> str:
    """Tokens echoed before the middle are dropped; the first one after it ends the text."""
    pos = 0
    while m := _SPECIAL.match(text, pos):
        pos = m.end()
    text = text[pos:]
    m = _SPECIAL.search(text)
    return text[: m.start()] if m else text


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    cuts = [i for s in stop if s and (i := text.find(s)) >= 0]
    return text[: min(cuts)] if cuts else text


def first_line(text: str, ctx: Context) -> str:
    """A generation that starts with a line break means "nothing more on this line" when the
    line has code; on a blank line the first line with content is what was meant."""
    m = _NEWLINE.search(text)
    if m is None:
        return text
    head = text[: m.start()]
    if head.strip():
        return head
    if not ctx.line_blank:
        return ""
    line = _CONTENT_LINE.search(text)
    return line.group() if line else ""


_LEADING_BLANK = re.compile(r"(?:[^\S\n]*\n)+")


def skip_blank_lines(text: str, ctx: Context) -> str:
    """On a blank line, line breaks before the first code only push it away from the cursor
    (the user is in the empty body they want filled): the completion starts with that code.
    When that code is indented less than the cursor it belongs outside the cursor's block (the
    model closed the body and began the next definition), so nothing is left."""
    if not ctx.line_blank:
        return text
    m = _LEADING_BLANK.match(text)
    if m is None:
        return text
    body = text[m.end() :]
    if body.strip() and _indent(body) < _width(ctx.cur):
        return ""
    return body


def drop_repetition(text: str, cur: str = "") -> str:
    """Keep the first occurrence of a loop: lines (or groups of up to 8 lines) repeated three
    times in a row, the last copy possibly cut short by the token limit, or a short period with
    a letter in it repeated to the end of the last line (``foo(bar(foo(bar(``; a run of one
    character such as ``xxxx`` or ``====`` is left alone: that is usually deliberate).
    ``cur`` is the current line before the cursor: the first line is compared with it in front,
    as it will read in the file."""
    original = text.split("\n")
    lines = [cur + original[0], *original[1:]] if cur.strip() == "" and cur else original
    n = len(lines)
    for i in range(n):
        for q in range(1, 9):
            if i + 2 * q >= n:
                break
            unit = lines[i : i + q]
            if not any(line.strip() for line in unit) or lines[i + q : i + 2 * q] != unit:
                continue
            third = lines[i + 2 * q : i + 3 * q]
            if third == unit or (
                i + 3 * q >= n and any(line.strip() for line in third)
                and third[:-1] == unit[: len(third) - 1]
                and unit[len(third) - 1].startswith(third[-1])
            ):  # fmt: skip
                return "\n".join(original[: i + q])
    return _drop_char_loop(text)


def _drop_char_loop(text: str) -> str:
    start = text.rfind("\n") + 1
    last = text[start:]
    for p in range(2, min(32, len(last) // 4) + 1):
        at = len(last) - p  # the run of period p that ends the text starts at ``at``
        while at > 0 and last[at - 1] == last[at - 1 + p]:
            at -= 1
        run = len(last) - at
        unit = last[at : at + p]
        if run >= max(4 * p, 16) and len(set(unit)) > 1 and any(c.isalpha() for c in unit):
            return text[: start + at + p]
    return text


def dedup_indentation(text: str, ctx: Context) -> str:
    """At column 0 the model's indentation is the line's; after typed indentation it may be
    repeated. Leading whitespace is dropped as far as it would indent deeper than the previous
    code line allows: one level when that line opens a block or continues, none otherwise."""
    if not ctx.cur or ctx.cur.strip():
        return text
    body = text.lstrip(" \t")
    lead = text[: len(text) - len(body)]
    if not lead or not body or body[0] in "\r\n":
        return text
    previous = _previous_line(ctx.prefix)
    allowed = _indent(previous)
    if _OPENS.search(_TRAILING_COMMENT.sub("", previous)):
        allowed += _indent_unit(ctx.prefix, ctx.cur)
    drop = 0
    while drop < len(lead) and _width(ctx.cur + lead[drop:]) > allowed:
        drop += 1
    return text[drop:]


def limit_scope(text: str, ctx: Context) -> str:
    """Stop at the first line indented less than the block the completion starts in (unless it
    starts by closing the completion's own bracket: that is only loose formatting), or at a
    bracket that closes what was open before the current line. A line of closers only (``}``,
    ``)``) is kept when the code below the cursor does not close that block already."""
    lines = text.split("\n")
    if len(lines) < 2:
        return text
    first = ctx.cur + lines[0]
    content = [line for line in lines[1:] if line.strip()]
    if not first.strip() and not content:
        return text
    if first.strip():
        block = _indent(first)
    elif ctx.cur:  # a blank first line after typed indentation: the cursor's block
        block = _width(ctx.cur)
    else:
        block = _indent(content[0])
    base = len(ctx.cur)
    closers = _closers(ctx.cur + text, ctx.language)
    unmatched = [p - base for p, o in closers if o is None]
    own = {p - base for p, o in closers if o is not None and o >= base}
    start = len(lines[0]) + 1
    for line in lines[1:]:
        end = start + len(line)
        closer = next((p for p in unmatched if start <= p < end), None)
        lead = start + len(line) - len(line.lstrip())
        if line.strip() and _indent(line) < block and lead not in own:
            cut = start
        elif closer is not None:
            cut = start if not line[: closer - start].strip() else closer
        else:
            start = end + 1
            continue
        if cut == start:
            if _CLOSING_LINE.match(line) and _may_close(line, ctx):
                return text[:end]
            return text[: start - 1]
        return text[:cut].rstrip(" \t")
    return text


def dedup_suffix_lines(text: str, ctx: Context, *, strict: bool = False) -> str:
    """Cut where the completion's lines become the lines below the cursor: when its last
    lines are the next lines of the suffix, or when it reaches the suffix's next line and that
    line is distinctive enough (8+ characters, or two lines in a row) to be no coincidence.
    ``strict`` (a left-to-right model, which never saw the suffix): any line equal to the
    suffix's next line, indentation aside, is where the gap ends."""
    below = [line.rstrip() for line in ctx.below if line.strip()][:64]
    if not below:
        return text
    lines = text.split("\n")
    full = [(ctx.cur + lines[0]).rstrip(), *(line.rstrip() for line in lines[1:])]
    first = 0 if not ctx.cur.strip() and not ctx.rest.strip() else 1
    for i in range(first, len(lines)):
        if not full[i].strip():
            continue
        tail = [line for line in full[i:] if line.strip()]
        if strict:
            runs_into = tail[0].strip() == below[0].strip()
        else:
            runs_into = tail[0] == below[0] and (
                len(tail[0].strip()) >= 8 or tail[1:2] == below[1:2] != []
            )
        if runs_into or tail == below[: len(tail)]:
            return "\n".join(lines[:i])
    return text


def dedup_rest_of_line(text: str, ctx: Context) -> str:
    """When a completion line ends with the rest of the current line, drop it there: at the
    end of the first line (the model wrote past the rest of the line: keep that line only) or
    at the end of the last. Not when the brackets in it close the completion's own openers."""
    tail = ctx.rest.strip()
    if not tail:
        return text
    lines = text.split("\n")
    offset = 0
    for idx, line in enumerate(lines):
        if idx in (0, len(lines) - 1):
            kept = line.rstrip()
            if kept.endswith(tail):
                cut = offset + len(kept) - len(tail)
                if not _closes_own(text, cut, cut + len(tail), ctx):
                    return text[:cut]
        offset += len(line) + 1
    return text


def balance_brackets(text: str, ctx: Context) -> str:
    """Cut before a closer on the first line that closes nothing opened on the current line
    (unless the line is blank and the completion is a closing line the code below lacks), and
    before closers of the line's own brackets that the rest of the line closes as well."""
    base = len(ctx.cur)
    nl = text.find("\n")
    line_end = base + (nl if nl >= 0 else len(text))
    rest_start = base + len(text)
    closers = _closers(ctx.cur + text + ctx.rest, ctx.language)
    head = text[: line_end - base]
    closing = not ctx.cur.strip() and _CLOSING_LINE.match(head) and _may_close(ctx.cur + head, ctx)
    for pos, opener in closers:
        if base <= pos < line_end and opener is None and not closing:
            return text[: pos - base].rstrip(" \t")
    alone = _closers(ctx.cur + ctx.rest, ctx.language)
    extra = sum(1 for p, o in closers if p >= rest_start and o is None) - sum(
        1 for p, o in alone if p >= base and o is None
    )
    if extra > 0:
        mine = [p for p, o in closers if base <= p < rest_start and o is not None and o < base]
        if mine:
            return text[: mine[-min(extra, len(mine))] - base].rstrip(" \t")
    return text


def drop_trailing_blank_lines(text: str, ctx: Context) -> str:
    """Trailing blank lines only push code down. When the rest of the current line follows the
    completion, one final line break stays so that rest lands on a line of its own."""
    m = _TRAILING_BLANK.search(text)
    if m is None:
        return text
    if ctx.rest.strip():
        end = text.find("\n", m.start() + 1)
        return text if end < 0 else text[:end]
    return text[: m.start()]


def adds_syntax_errors(prefix: str, completion: str, suffix: str, language: str | None) -> bool:
    """True when the file parses with more ERROR/MISSING nodes with the completion than
    without. Unknown languages and parser failures never reject. Only whole lines within
    ``_SYNTAX_WINDOW`` characters of the cursor are parsed, so a huge file costs no more than
    a prompt's worth of text; errors the window's edges cause count on both sides."""
    parser = _parser(language)
    if parser is None:
        return False
    if len(prefix) > _SYNTAX_WINDOW:
        prefix = prefix[-_SYNTAX_WINDOW:]
        prefix = prefix[prefix.find("\n") + 1 :]
    if len(suffix) > _SYNTAX_WINDOW:
        suffix = suffix[: suffix.rfind("\n", 0, _SYNTAX_WINDOW) + 1]
    try:
        before = _error_count(parser, prefix + suffix)
        after = _error_count(parser, prefix + completion + suffix)
    except Exception:  # a parser problem must not cost the user a completion
        log.debug("syntax check failed for %s", language, exc_info=True)
        return False
    return after > before


# -- brackets ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Lexical:
    comments: tuple[str, ...]
    quotes: str
    rust_chars: bool


_BACKTICK = frozenset({"javascript", "typescript", "tsx", "go"})


@functools.lru_cache(maxsize=64)
def _lexical(language: str | None) -> _Lexical:
    """Comment marker and string quotes from the language registry (plain quotes when the
    language is unknown)."""
    from starcoder_ls.languages import language_for

    info = language_for(language) if language else None
    name = info.name if info else ""
    comments = (info.line_comment,) if info and info.line_comment else ()
    return _Lexical(comments, "\"'" + ("`" if name in _BACKTICK else ""), name == "rust")


def _brackets(text: str, lex: _Lexical) -> Iterator[tuple[int, str]]:
    """Brackets outside strings and line comments; a string never spans lines here, which is
    wrong only for rare multi-line strings and keeps one bad quote from hiding the rest."""
    starts = {c[0] for c in lex.comments}
    i, n, quote = 0, len(text), ""
    while i < n:
        ch = text[i]
        if ch == "\n":
            quote = ""
        elif quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "([{)]}":
            yield i, ch
        elif ch in lex.quotes:
            if ch == "'" and lex.rust_chars:  # a char literal, or a lifetime with no string
                m = _RUST_CHAR.match(text, i)
                if m:
                    i = m.end()
                    continue
            else:
                quote = ch
        elif ch in starts and any(text.startswith(c, i) for c in lex.comments):
            i = text.find("\n", i)
            if i < 0:
                return
            continue
        i += 1


def _closers(text: str, language: str | None) -> list[tuple[int, int | None]]:
    """Each closing bracket with the position of the opener it closes (None: it closes
    nothing, or a bracket of another kind)."""
    return _match(text, language)[0]


def _match(text: str, language: str | None) -> tuple[list[tuple[int, int | None]], int]:
    """The closers as :func:`_closers` gives them, and how many openers stay open."""
    stack: list[tuple[str, int]] = []
    out: list[tuple[int, int | None]] = []
    for pos, ch in _brackets(text, _lexical(language)):
        if ch in _OPENERS:
            stack.append((ch, pos))
        elif stack and stack[-1][0] == _PAIR[ch]:
            out.append((pos, stack.pop()[1]))
        else:
            out.append((pos, None))
    return out, len(stack)


def _closes_own(text: str, start: int, end: int, ctx: Context) -> bool:
    """Whether a closer in ``text[start:end]`` closes a bracket the completion opened."""
    base = len(ctx.cur)
    return any(
        base + start <= p < base + end and o is not None and o >= base
        for p, o in _closers(ctx.cur + text[:end], ctx.language)
    )


def _may_close(line: str, ctx: Context) -> bool:
    """A closing line is wanted when the file lacks a closer: the prefix leaves more brackets
    open than the suffix closes, and the next code line is not a closer at that level."""
    if ctx.rest.strip():
        return False
    nxt = next((b for b in ctx.below if b.strip()), None)
    if nxt is not None and _indent(nxt) >= _indent(line) and nxt.lstrip()[0] in _CLOSERS:
        return False
    return ctx.unclosed > 0


# -- indentation ---------------------------------------------------------------------------


def _width(whitespace: str) -> int:
    return len(whitespace.expandtabs(4))


def _indent(line: str) -> int:
    return _width(line[: len(line) - len(line.lstrip(" \t"))])


def _previous_line(prefix: str) -> str:
    """The last non-blank line before the current one ("" at the top of the file)."""
    end = prefix.rfind("\n")
    for _ in range(200):
        if end < 0:
            break
        start = prefix.rfind("\n", 0, end) + 1
        line = prefix[start:end]
        if line.strip():
            return line
        end = start - 1
    return ""


def _indent_unit(prefix: str, cur: str) -> int:
    """The file's indentation step: the most common increase between consecutive code lines."""
    if "\t" in cur:
        return 4
    steps: Counter[int] = Counter()
    previous = None
    for line in prefix[-_PREFIX_WINDOW:].split("\n")[1:-1]:
        if line.strip():
            width = _indent(line)
            if previous is not None and width > previous:
                steps[width - previous] += 1
            previous = width
    return steps.most_common(1)[0][0] if steps else 4


# -- syntax check --------------------------------------------------------------------------


def _parser(language: str | None) -> Any:
    """The registry's parser for ``language`` (one per thread), or None."""
    if not language:
        return None
    from starcoder_ls.languages import language_for, parser_for

    return parser_for(language_for(language))


def _error_count(parser: Any, text: str) -> int:
    root = parser.parse(text.encode("utf-8", "surrogatepass")).root_node
    count, stack = 0, [root] if root.has_error else []
    while stack:
        node = stack.pop()
        count += bool(node.is_error or node.is_missing)
        stack.extend(c for c in node.children if c.has_error or c.is_missing)
    return count
