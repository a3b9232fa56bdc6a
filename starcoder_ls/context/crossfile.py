"""Cross-file context: what other files of the workspace put into the prompt, within a budget.

Four sources, each scored and given a share of the cross-file token budget (a source that has
less to say than its share passes the rest on):

1. **import**: the current file's imports resolved to workspace files, as outlines of the
   imported definitions (those used near the cursor first);
2. **definition**: definitions of the identifiers near the cursor (and of the classes of the
   variables there) looked up in the workspace's symbol table;
3. **similar**: RepoCoder-style windows of other files most like the lines before the cursor;
4. **recent**: chunks the user recently edited or looked at (llama.vim's ring).

Segments are ordered by how rarely they change (imports, then definitions, then similar code,
then recent edits), and a document's context is reused as long as the cursor stays on the same
line, the resolvable identifiers near it stay the same and no other file changed: the prompt's
start then stays identical between keystrokes, so a backend's KV cache covers it.
"""

from __future__ import annotations

import copy
import heapq
import math
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from starcoder_ls.context import outlines
from starcoder_ls.context.index import FileEntry, WorkspaceIndex
from starcoder_ls.context.recent import RecentRing
from starcoder_ls.context.similar import identifiers
from starcoder_ls.context.symbols import FileOutline, ImportRef, Symbol, name_words
from starcoder_ls.languages.registry import language_for
from starcoder_ls.types import Segment

SHARES: dict[str, float] = {"import": 0.5, "definition": 0.15, "similar": 0.2, "recent": 0.15}
KIND_ORDER = ("import", "definition", "similar", "recent")
_FILL_ORDER = ("import", "definition", "recent", "similar")
NEAR_LINES = 4
"""Lines before the cursor (with the cursor's own) whose identifiers are looked up."""
QUERY_LINES = 20
"""Lines before the cursor that similar windows are matched against (RepoCoder's window)."""
NEIGHBOURS = 8
"""Similar windows retrieved per request: their identifiers rank imports and definitions."""
FOLLOWING_LINES = 10
"""Lines after each similar window whose names count as used by code like the cursor's."""
SIMILAR_SHOWN = 3
"""Of those, the best few are candidates for the prompt as code."""
_MAX_IMPORT_CANDIDATES = 32
_MIN_USEFUL = 8
"""Tokens below which a source's remaining share is not worth another candidate."""
_TYPE_LINES = 60
"""Lines before the cursor searched for the classes of variables (``x = Foo(``)."""
_TYPED_VAR = re.compile(
    r"\b([A-Za-z_]\w*)\s*(?::\s*([A-Z]\w*)|=\s*(?:new\s+|await\s+|&)?([A-Z]\w*)\s*[({<])"
)
_DECLARED_VAR = re.compile(r"\b([A-Z]\w*)(?:<[^>]*>)?\s*[*&]?\s+([a-z_]\w*)\s*[=;,)]")
_IDENT_RE = re.compile(r"[A-Za-z_$][\w$]*")
"""A name, ``$`` included (JavaScript's ``$ZodType``); see :func:`_line_identifiers`."""


@dataclass
class Request:
    """Where the cursor is, in the shape retrieval needs."""

    uri: str
    path: str | None
    """Workspace-relative path of the current file (None: outside every workspace folder)."""
    language: str | None
    before: str
    """Up to the cursor: the last lines of the document before it, with the cursor line's start."""
    after: str
    """From the cursor: the rest of the line and a few lines below."""
    line: int
    budget: int
    count_tokens: Callable[[str], int]
    count_ahead: Callable[[list[str]], None] | None = None
    """Counts several texts in one call and remembers them for ``count_tokens`` (where each
    call is a round trip to a worker process): the next few candidates are counted at once."""
    open_lines: Callable[[Path], list[str] | None] | None = None
    """Current lines of an open document by file path (newer than the file on disk)."""
    segment_cost: int = 2
    """Tokens the prompt template adds to each segment besides its path (a file separator)."""
    line_cost: float = 0.0
    """Tokens the template adds to each line of a segment (a commented layout's marker)."""


@dataclass
class _Candidate:
    kind: str
    path: str
    start: int
    end: int
    source: str | Callable[[], str]
    """The text, or what renders it when first needed (most candidates are never shown)."""
    score: float
    key: tuple[str, int]
    brief: Callable[[], str] | None = None
    """Renders a shorter form (the signature alone), used when ``text`` does not fit."""
    name: str = ""
    """The definition's name (imports and definitions)."""

    @property
    def text(self) -> str:
        if not isinstance(self.source, str):
            self.source = self.source()
        return self.source

    @text.setter
    def text(self, value: str) -> None:
        self.source = value


class CrossFileContext:
    """Retrieval over one or more workspace indexes and the recent ring; thread-safe."""

    def __init__(
        self,
        index_for: Callable[[str], WorkspaceIndex | None],
        recent: RecentRing | None = None,
        *,
        stable: bool = True,
    ) -> None:
        self.index_for = index_for
        """The index of the workspace folder that holds a URI (None outside any)."""
        self.recent = recent
        self.stable = stable
        """Reuse a document's context while nothing it depends on changed, and order segments
        by how rarely they change. False (for comparisons) retrieves on every request and orders
        by score, most relevant last."""
        self._memo: dict[str, tuple[tuple[object, ...], list[Segment]]] = {}
        self._lock = threading.Lock()

    def generation(self, uri: str) -> tuple[int, int]:
        """What a document's retrieved context depends on besides the document itself: the
        index's changes to other files and the recent edits of other documents."""
        index = self.index_for(uri)
        path = None
        if index is not None:
            from starcoder_ls.context.workspaces import uri_to_path

            file_path = uri_to_path(uri)
            path = index.relative(file_path) if file_path is not None else None
        return (
            index.generation(path) if index is not None else -1,
            self.recent.version(uri) if self.recent is not None else 0,
        )

    def has_recent(self, uri: str) -> bool:
        """Whether the ring holds chunks of documents other than ``uri``."""
        return self.recent is not None and any(c.uri != uri for c in self.recent.chunks())

    def segments(self, req: Request) -> list[Segment]:
        if req.budget <= 0:
            return []
        index = self.index_for(req.uri)
        near = _near_identifiers(req.before, req.after)
        names = _resolvable(index, near, req.path)
        key = (
            req.line,
            req.budget,
            names,
            index.generation(req.path) if index is not None else -1,
            self.recent.version(req.uri) if self.recent is not None else 0,
            id(index),
        )
        if not self.stable:
            found = self._gather(index, req, near, names)
            return sorted(found, key=lambda seg: seg.score)
        with self._lock:
            memo = self._memo.get(req.uri)
        if memo is not None and memo[0] == key:
            return memo[1]
        found = self._gather(index, req, near, names)
        with self._lock:
            if len(self._memo) > 64:
                self._memo.clear()
            self._memo[req.uri] = (key, found)
        return found

    def _gather(
        self,
        index: WorkspaceIndex | None,
        req: Request,
        near: list[str],
        names: tuple[str, ...],
    ) -> list[Segment]:
        pools: dict[str, list[_Candidate]] = {kind: [] for kind in KIND_ORDER}
        if index is not None:
            neighbours = _neighbours(index, req)
            co_use = _co_use(neighbours)
            pools["import"] = _imports(index, req, set(near), co_use, neighbours)
            taken = {c.key for c in pools["import"]}
            # A name the imports offer is not looked up again: in C the header's declaration
            # says what the .c file's definition would, elsewhere another file's namesake is
            # not the one imported.
            imported = {c.name for c in pools["import"]}
            wanted = names + _co_used_names(index, co_use, names, req.path)
            pools["definition"] = [
                c
                for c in _definitions(index, req, wanted)
                if c.key not in taken and c.name not in imported
            ]
            pools["similar"] = _similar(neighbours[:SIMILAR_SHOWN], req)
        if self.recent is not None:
            pools["recent"] = _recent(self.recent, req)
        return _fill(pools, req)


# -- identifiers near the cursor --------------------------------------------------------------


def _near_identifiers(before: str, after: str) -> list[str]:
    """Identifiers of the cursor line and the few lines above, closest first, plus the classes
    of variables used there when the code before says what they are."""
    lines = before.split("\n")[-NEAR_LINES:]
    lines[-1] += after.split("\n", 1)[0]
    ordered: list[str] = []
    for line in reversed(lines):
        for ident in reversed(_IDENT_RE.findall(line)):
            if ident not in ordered:
                ordered.append(ident)
    above = before[: before.rfind("\n") + 1]
    types = dict(
        _variable_types(above[above.rfind("\n", 0, max(0, len(above) - 80 * _TYPE_LINES)) + 1 :])
    )
    cursor_line = before[len(above) :]
    for m in _TYPED_VAR.finditer(cursor_line):
        types[m.group(1)] = m.group(2) or m.group(3)
    out: list[str] = []
    for ident in ordered:
        out.append(ident)
        if ident in types and types[ident] not in ordered:
            out.append(types[ident])
    return out


@lru_cache(maxsize=16)
def _variable_types(text: str) -> tuple[tuple[str, str], ...]:
    """(variable, class) pairs declared in ``text``, the lines above the cursor: cached, since
    those lines stay the same while the cursor's line is typed."""
    types: dict[str, str] = {}
    for m in _TYPED_VAR.finditer(text):
        types[m.group(1)] = m.group(2) or m.group(3)
    for m in _DECLARED_VAR.finditer(text):
        types[m.group(2)] = m.group(1)
    return tuple(types.items())


def _nameworthy(name: str) -> bool:
    """Worth looking up: two characters or more, or a capital (Go's ``type H map[string]any``);
    a lone ``i`` or ``x`` is a local."""
    return len(name) > 1 or name.isupper()


def _resolvable(index: WorkspaceIndex | None, near: list[str], path: str | None) -> tuple[str, ...]:
    """The near identifiers the workspace defines outside the current file, in order."""
    if index is None:
        return ()
    return tuple(
        name
        for name in dict.fromkeys(near)
        if _nameworthy(name) and index.defined_elsewhere(name, path)
    )


# -- sources ----------------------------------------------------------------------------------


def _current_outline(index: WorkspaceIndex, req: Request) -> FileOutline:
    entry = index.entry(req.path) if req.path else None
    if entry is not None:
        return entry.outline
    from starcoder_ls.context.tags import outline

    return outline(req.before + req.after, req.language, req.path)


def _in_view(current: FileOutline, req: Request) -> frozenset[str]:
    """The names the current file defines (at its top level) in the lines the prompt shows: an
    imported namesake (the same file for other Go build tags, a header's declaration of a
    function defined here) would repeat what the prompt says. (Definitions found by bare name
    keep theirs: measured, dropping them cost Python 1.5 points.)"""
    first = req.line - req.before.count("\n")
    last = req.line + req.after.count("\n")
    return frozenset(s.name for s in current.top_level() if first <= s.line <= last)


def _imports(
    index: WorkspaceIndex,
    req: Request,
    near: set[str],
    co_use: dict[str, float],
    neighbours: list[_Neighbour],
) -> list[_Candidate]:
    info = language_for(req.language, req.path)
    if info is None or req.path is None:
        return []
    current = _current_outline(index, req)
    window_use = _proximity_use(req.before, req.after)
    usage = _memo_usage(index)
    wanted = {n for names in (window_use, co_use, near) for n in names if _nameworthy(n)}
    small = req.budget < SMALL_BUDGET
    best: dict[tuple[str, str], tuple[float, Symbol, FileEntry]] = {}

    exported_only = info.name == "go"
    # Names the file uses far from the cursor are likely used again; its own are not imported.
    in_file = _names_used_elsewhere(index, req.path, current)
    subject = _subject_stem(req.path)
    fresh = _unused_bindings(current, req)
    in_view = _in_view(current, req)
    # The names around the cursor whose kin (same first and last words) are likely next.
    close = near.union(*map(_line_identifiers, req.after.split("\n")[1:4]))
    seeds = _seed_ends(n for n in close if len(n) > 3)
    dynamic = frozenset(near).union(window_use, co_use)
    pointed = dynamic.union(in_file)
    around = _Around(window_use, near, co_use, usage, small, in_file, seeds, pointed, dynamic)

    def consider(ref: ImportRef, target: str, only: set[str] | None, alone: bool = False) -> None:
        entry = index.entry(target)
        if entry is None:
            return
        # One of many files that defines a name used right at the cursor: its other names
        # are likelier than another file's (``GaugeOpts`` beside ``NewGaugeFunc``).
        mate = not alone and not close.isdisjoint(entry.outline.top_positions())
        if mate:
            only = None if only is wanted else only
        elif only is wanted:  # one of many files: the names in use, and its few most used
            only = wanted | usage.most_used(entry, _FEW_POPULAR)
        lift = 0.0
        if subject is not None and _stem(target) == subject:
            lift, only = _SUBJECT, None  # the file a test file tests
        elif not ref.names and ref.bound and ref.bound[-1] in fresh:
            lift, only = _UNUSED, None  # a module imported and not used yet: it will be
        if only is None and len(entry.outline.top_level()) > _BIG_FILE:
            only = wanted | set(ref.names) | usage.most_used(entry)
        unused = {n for n, b in zip(ref.names, ref.bound, strict=False) if b in fresh}
        keep, hidden = reach(ref)
        offered = _imported_symbols(
            ref, entry.outline, around, only, lift, unused, alone, keep, _MATE if mate else 0.0
        )
        offer(target, entry, offered, hidden)

    def reach(ref: ImportRef) -> tuple[Callable[[str], bool] | None, frozenset[str]]:
        """Which of an import's names it can offer, and which it may not (namesakes of the
        names the current file defines in view). Another Go package's lower-case names are
        private to it; its names are written qualified (``prometheus.NewSummary``), so a
        namesake here hides none of them."""
        if exported_only and ref.module:
            return _go_exported, frozenset()
        return None, in_view

    def offer(
        target: str,
        entry: FileEntry,
        offered: Iterable[tuple[Symbol, float]],
        hidden: frozenset[str],
    ) -> None:
        for sym, score in offered:
            if sym.name in hidden:
                continue
            # One definition per name and file: the variants of ``#ifdef`` branches say the
            # same thing, and the first is shown.
            key = (target, sym.name)
            held = best.get(key)
            if held is None or held[0] < score or (held[0] == score and sym.line < held[1].line):
                best[key] = (score, sym, entry)

    def consider_many(ref: ImportRef, targets: list[str]) -> None:
        """The files of a many-file import beyond the first few: most offer only their few
        most used names (nothing around the cursor names theirs), found without a scan."""
        if not targets:
            return
        if ref.names or (ref.bound and ref.bound[-1] in fresh):
            for target in targets:
                consider(ref, target, wanted)
            return
        base = 0.3 - _demotion(ref, around)
        keep, hidden = reach(ref)
        many = usage.many(tuple(targets))
        # The files the request points at (a name of theirs in use, or the file a test file
        # tests) are weighed one by one; so are those with a name of the same family as one
        # near the cursor, should the family hold. The others offer their few most used.
        named = many.defining(around.pointed)
        for target in targets:
            if (
                target in named
                or target in many.big
                or (subject is not None and _stem(target) == subject)
            ):
                named.add(target)
                consider(ref, target, wanted)
        kin = {
            target
            for target in many.sharing_ends(around.seeds).difference(named)
            if (entry := index.entry(target)) is not None and _family(entry.outline, around.seeds)
        }
        for target in kin:
            consider(ref, target, wanted)
        # The rest offer the same few names whatever the request: only the best of them can
        # make the cut, so the walk down their ranking stops there.
        taken = 0
        for score, sym, entry in many.ranked(base):
            if taken >= _MAX_IMPORT_CANDIDATES:
                break
            if entry.path in named or entry.path in kin:
                continue
            if sym.name in hidden or (keep is not None and not keep(sym.name)):
                continue
            key = (entry.path, sym.name)
            held = best.get(key)
            if held is None or held[0] < score or (held[0] == score and sym.line < held[1].line):
                taken += 1
                best[key] = (score, sym, entry)

    # An import that stands for many files (a Go package, a C# namespace): every file offers
    # the names used around the cursor or in code like it; the first few (and those that
    # code like the cursor's comes from) offer all of their names.
    whole = {n.path for n in neighbours}
    for ref in current.imports:
        targets = usage.resolve(ref, req.path, info.name)
        many = []
        for i, target in enumerate(targets):
            if i < _WHOLE_FILES or target in whole:
                consider(ref, target, None, len(targets) == 1)
            else:
                many.append(target)
        consider_many(ref, many)
        if targets and ref.names:
            _follow_reexports(index, ref, targets[0], info.name, consider)
    if info.name in SAME_PACKAGE:
        # Go and Java see the other files of their package (directory) without importing them.
        package = ImportRef(module="")
        many = []
        for i, sibling in enumerate(_package_files(index, req.path, info.name)):
            if i < _WHOLE_FILES or sibling in whole:
                consider(package, sibling, None)
            else:
                many.append(sibling)
        consider_many(package, many)
    # Only the best few are rendered: a module imported whole may define hundreds of names.
    ranked = sorted(best.values(), key=lambda v: (-v[0], v[2].path, v[1].line))
    out = []
    for rank, (score, sym, entry) in enumerate(ranked[:_MAX_IMPORT_CANDIDATES]):
        key = (entry.path, sym.line)
        text: str | Callable[[], str]
        if score < _SPECULATIVE or rank >= (_SMALL_FULL if small else _FULL):
            # Nothing around the cursor or in code like it uses the name (or the budget is
            # small and better names come first): its signature alone, so that more of the
            # likely names fit.
            text, brief = _brief(sym, entry.language), None
        else:
            text, brief = _render(entry, sym, wanted), _brief(sym, entry.language)
            if len(text) > max(_FULL_SHARE * req.budget, _FULL_FLOOR) * _CHARS_PER_TOKEN:
                text, brief = brief(), None  # a hog: ten signatures fit in its room
        out.append(
            _Candidate("import", key[0], sym.line, sym.end_line, text, score, key, brief, sym.name)
        )
    return out


def _follow_reexports(
    index: WorkspaceIndex,
    ref: ImportRef,
    target: str,
    language: str,
    consider: Callable[[ImportRef, str, set[str] | None], None],
) -> None:
    """Names imported from a file that only passes them on (``__init__.py``, a barrel ``index.ts``,
    ``pub use``) are offered from the file that defines them."""
    entry = index.entry(target)
    if entry is None:
        return
    here = {s.name for s in entry.outline.top_level()}
    for name in ref.names:
        if name == "*" or name in here:
            continue
        found = index.reexported(target, name, language)
        if found is not None and found[0] != target:
            consider(ImportRef(ref.module, (found[1].name,), (found[1].name,)), found[0], {name})


SAME_PACKAGE = frozenset({"go", "java"})
"""Languages whose files see the top-level names of the other files of their directory (the
package) without any import."""
_MAX_PACKAGE_FILES = 1000
_WHOLE_FILES = 4
"""Files of one import (or of the package) whose every name is a candidate."""


_SUBJECT = 0.4
"""Score added to the names of the file a test file tests."""
_UNUSED = 0.4
"""Score added to the names of a module imported and not used yet."""
_TEST_NAME = re.compile(
    r"^(?:test_(?P<a>.+)|(?P<b>.+?)(?:_test|_unittest|_tests|_spec|\.test|\.spec|Tests?))$"
)


_IN_FILE_MEMO: list[tuple[tuple[str, ...], FileOutline, frozenset[str]]] = []


def _names_used_elsewhere(index: WorkspaceIndex, path: str, current: FileOutline) -> frozenset[str]:
    """The names ``path`` uses that it does not define, remembered while the indexed file
    stays the same (the index hands back the same tuple until the file is indexed again)."""
    names = index.names_used(path)
    for held_names, held_outline, found in _IN_FILE_MEMO:
        if held_names is names and held_outline is current:
            return found
    found = frozenset(names).difference(s.name for s in current.symbols)
    _IN_FILE_MEMO[:] = [(names, current, found), *_IN_FILE_MEMO[:3]]
    return found


def _go_exported(name: str) -> bool:
    return name[:1].isupper()


def _stem(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    return name.split(".", 1)[0] if not name.startswith(".") else name


def _subject_stem(path: str) -> str | None:
    """The file name (without extension) of what a test file tests: ``foo`` for
    ``foo_test.go``, ``test_foo.py``, ``foo.test.ts``, ``FooTest.java``, ``foo_spec.rb``."""
    name = path.rsplit("/", 1)[-1]
    base = name.rsplit(".", 1)[0] if "." in name else name
    m = _TEST_NAME.match(base)
    if m is None:
        return None
    found = m.group("a") or m.group("b")
    return found.split(".", 1)[0] if found else None


def _unused_bindings(current: FileOutline, req: Request) -> frozenset[str]:
    """Names the file's imports bind that nothing else in view uses yet (the import lines
    being in view): the line being written is likely their first use. Empty when the imports
    are out of view."""
    if not current.imports:
        return frozenset()
    before = req.before.split("\n")
    first = req.line - (len(before) - 1)
    rows = {ref.line for ref in current.imports}
    if min(rows) < first:
        return frozenset()
    seen: set[str] = set()
    for i, line in enumerate(before):
        if first + i not in rows:
            seen.update(_line_identifiers(line))
    for line in req.after.split("\n")[1:]:
        seen.update(_line_identifiers(line))
    bound = {b for ref in current.imports for b in ref.bound if b != "*"}
    return frozenset(bound - seen)


def _package_files(index: WorkspaceIndex, path: str, language: str) -> list[str]:
    """The other files of ``path``'s directory in the same language (its Go or Java package),
    at most :data:`_MAX_PACKAGE_FILES`."""
    folder = path.rsplit("/", 1)[0] if "/" in path else ""
    out = []
    for other in index.paths():
        if other == path or (other.rsplit("/", 1)[0] if "/" in other else "") != folder:
            continue
        entry = index.entry(other)
        if entry is not None and entry.language == language:
            out.append(other)
            if len(out) >= _MAX_PACKAGE_FILES:
                break
    return out


_DECAY = 50.0
"""Lines over which a use's weight halves (measured: 25 and sharper cost C 1–3.5 points)."""


def _proximity_use(before: str, after: str) -> dict[str, float]:
    """How much each identifier is used around the cursor, nearer uses counting more (a use
    ``d`` lines away counts ``1 / (1 + d / _DECAY)``): what the next line will likely use too."""
    use: dict[str, float] = {}
    for lines in (before.split("\n")[::-1], after.split("\n")):
        for distance, line in enumerate(lines):
            weight = 1.0 / (1.0 + distance / _DECAY)
            for ident in _line_identifiers(line):
                use[ident] = use.get(ident, 0.0) + weight
    return use


_LINE_IDENTS: dict[str, frozenset[str]] = {}


def _line_identifiers(line: str) -> frozenset[str]:
    """A line's identifiers, remembered: the lines around the cursor recur request after
    request. (A benign race between threads only recounts a line.)"""
    found = _LINE_IDENTS.get(line)
    if found is None:
        if len(_LINE_IDENTS) > 50_000:
            _LINE_IDENTS.clear()
        names = _IDENT_RE.findall(line)
        names += [n.lstrip("$") for n in names if n[0] == "$" and len(n) > 1]
        found = _LINE_IDENTS[line] = frozenset(names)
    return found


_SPECULATIVE = 0.3
"""Import candidates scored below this are rendered as their signature alone."""
SMALL_BUDGET = 320
"""Cross-file budgets below this (a 512-token model's) demote type-only imports."""
_SMALL_FULL = 1
_FULL = 2
"""Import candidates shown as full outlines (docs, members); the rest as their signatures, so
that more of the likely names fit. A small budget shows :data:`_SMALL_FULL`."""
_FULL_SHARE = 0.1
"""The most of the budget a full outline may take (a 40-member struct, a class with long
docs): a bigger one is shown as its signature. Measured at 1536/512: C++ 91 -> 96.5%,
Java 95 -> 98.5%, PHP 97.5 -> 99.5%, C# 91.5 -> 93.5%, C 86.5 -> 87%."""
_FULL_FLOOR = 40
"""Tokens a full outline may always take (a small class with a docstring and a few members)."""
_CHARS_PER_TOKEN = 4
_TEST_PATH = re.compile(
    r"(?:^|/)(?:tests?|testing|spec|__tests__|fixtures?|testdata)/|(?:^|/)test_[^/]*$"
    r"|_test\.\w+$|\.(?:test|spec)\.\w+$|Tests?\.\w+$|_spec\.rb$"
)


def is_test_path(path: str) -> bool:
    """Whether ``path`` is a test or a test fixture (by the usual layouts and names)."""
    return _TEST_PATH.search(path) is not None


class _Usage:
    """How much of the workspace uses a name, as a small score (at most 0.15) that orders the
    names nothing near the cursor points at: a helper that half the package calls is a
    better guess than one called once. Remembered per index until a file changes."""

    def __init__(self, index: WorkspaceIndex, generation: int) -> None:
        self.index = index
        self.generation = generation
        self.scores: dict[str, float] = {}
        self.popular: dict[tuple[str, int], tuple[FileOutline, frozenset[str]]] = {}
        self.files: dict[int, tuple[FileOutline, list[float]]] = {}
        self.fews: dict[str, tuple[FileOutline, list[tuple[Symbol, float]]]] = {}
        self.statics: dict[tuple[int, float, float], tuple[FileOutline, list[float]]] = {}
        self.positions: dict[tuple[int, int], tuple[FileOutline, frozenset[str], list[int]]] = {}
        self.resolved: dict[tuple[ImportRef, str, str], tuple[str, ...]] = {}
        self.manys: dict[tuple[str, ...], _ManyFiles] = {}

    def advanced(self, generation: int, paths: set[str], names: set[str]) -> _Usage:
        """A copy for ``generation``, which differs from this one's by the files ``paths``
        indexed again, and with them the usage of ``names``: what depends on neither is kept
        (a new object, so that a request reading this one meanwhile sees it whole)."""
        new = _Usage(self.index, generation)
        # An edit changes the usage of a handful of names: the files that define them, and
        # those edited, are the ones whose scores go.
        touched = paths | self.index.files_defining(names)
        new.scores = dict(self.scores)
        for name in names:
            new.scores.pop(name, None)
        gone = {id(e.outline) for path in touched if (e := self.index.entry(path)) is not None}
        new.files = {k: v for k, v in self.files.items() if k not in gone}
        new.statics = {k: v for k, v in self.statics.items() if k[0] not in gone}
        new.positions = dict(self.positions)  # where names are: usage does not move them
        new.fews = dict(self.fews)
        new.popular = dict(self.popular)
        for path in touched:
            new.fews.pop(path, None)
            for n in (_FEW_POPULAR, _POPULAR):
                new.popular.pop((path, n), None)
        new.resolved = dict(self.resolved)  # same files, same packages
        for targets, many in self.manys.items():
            if touched.isdisjoint(targets):
                new.manys[targets] = many.moved_to(new)
        return new

    def __call__(self, name: str) -> float:
        found = self.scores.get(name)
        if found is None:
            if len(self.scores) > 200_000:
                self.scores.clear()
            found = self.scores[name] = _usage_score(self.index.usage(name))
        return found

    def of_file(self, outline: FileOutline) -> list[float]:
        """The score of each of ``outline``'s :meth:`~FileOutline.top_level` names, in order;
        kept while the outline is (it is replaced when its file is indexed again). The
        workspace usage of names not scored yet is looked up at once (a header's 3,000)."""
        held = self.files.get(id(outline))
        if held is None or held[0] is not outline:
            if len(self.files) > 4096:
                self.files.clear()
            known = self.scores
            if len(known) > 200_000:
                known.clear()
            every = outline.top_level()
            todo = list({sym.name for sym in every if sym.name not in known})
            if todo:
                known.update(zip(todo, map(_usage_score, self.index.usages(todo)), strict=True))
            scores = [known[sym.name] for sym in every]
            held = self.files[id(outline)] = (outline, scores)
        return held[1]

    def unpointed(self, outline: FileOutline, base: float, specific: float) -> list[float]:
        """The score of each of ``outline``'s names that nothing in a request points at, for
        an import whose names start at ``base`` (see :func:`_imported_symbols`)."""
        key = (id(outline), base, specific)
        held = self.statics.get(key)
        if held is None or held[0] is not outline:
            if len(self.statics) > 4096:
                self.statics.clear()
            scores = [round(base + (u - 0.2 + specific), 3) for u in self.of_file(outline)]
            held = self.statics[key] = (outline, scores)
        return held[1]

    def positions_of(self, outline: FileOutline, names: frozenset[str]) -> list[int]:
        """Where ``names`` (the names a file uses, one set while that file stays the same) are
        among ``outline``'s :meth:`~FileOutline.top_level` names."""
        key = (id(outline), id(names))
        held = self.positions.get(key)
        if held is None or held[0] is not outline or held[1] is not names:
            if len(self.positions) > 1024:
                self.positions.clear()
            where = outline.top_positions()
            if len(names) < len(where):
                found = [i for name in names for i in where.get(name, ())]
            else:
                found = [i for name, at in where.items() if name in names for i in at]
            held = self.positions[key] = (outline, names, found)
        return held[2]

    def few(self, entry: FileEntry) -> list[tuple[Symbol, float]]:
        """The definitions of ``entry``'s :data:`_FEW_POPULAR` most used names, with the
        score of each name's usage."""
        held = self.fews.get(entry.path)
        if held is None or held[0] is not entry.outline:
            outline = entry.outline
            where, every, scores = (
                outline.top_positions(),
                outline.top_level(),
                self.of_file(outline),
            )
            found = [
                (every[i], scores[i])
                for name in self.most_used(entry, _FEW_POPULAR)
                for i in where[name]
            ]
            held = self.fews[entry.path] = (outline, found)
        return held[1]

    def many(self, targets: tuple[str, ...]) -> _ManyFiles:
        """What :class:`_ManyFiles` knows of the files of one many-file import."""
        held = self.manys.get(targets)
        if held is None:
            if len(self.manys) > 256:
                self.manys.clear()
            held = self.manys[targets] = _ManyFiles(self, targets)
        return held

    def resolve(self, ref: ImportRef, path: str, language: str) -> tuple[str, ...]:
        """The files ``ref`` in ``path`` stands for, remembered while no file changes."""
        key = (ref, path, language)
        found = self.resolved.get(key)
        if found is None:
            if len(self.resolved) > 20_000:
                self.resolved.clear()
            found = self.resolved[key] = self.index.resolve(ref, path, language)
        return found

    def most_used(self, entry: FileEntry, n: int = 0) -> frozenset[str]:
        """The ``n`` (:data:`_POPULAR`) most used of a file's names: the only ones worth
        offering when nothing near the cursor names any (a 3,000-declaration header)."""
        n = n or _POPULAR
        outline = entry.outline
        held = self.popular.get((entry.path, n))
        if held is None or held[0] is not outline:
            scores = self.of_file(outline)
            scored = dict(zip((s.name for s in outline.top_level()), scores, strict=True))
            top = heapq.nsmallest(n, scored.items(), key=lambda kv: (-kv[1], kv[0]))
            held = self.popular[(entry.path, n)] = (outline, frozenset(name for name, _ in top))
        return held[1]


def _usage_score(used: int) -> float:
    """A name's usage score from the windows that use it (see :class:`_Usage`)."""
    return 0.15 * min(1.0, math.log1p(used) / math.log1p(400))


class _ManyFiles:
    """The files of one many-file import (a C# namespace of 300 files), looked up by name
    instead of scanned on every request; kept while the index stays the same."""

    def __init__(self, usage: _Usage, targets: tuple[str, ...]) -> None:
        self.usage = usage
        self.names: dict[str, list[str]] = {}
        """Each top-level name and the files that define it."""
        self.ends: dict[tuple[bool, str], list[str]] = {}
        """Each first or last word of a name (see ``name_ends``) and the files with such."""
        self.big: set[str] = set()
        """Files too big to offer their few most used alone (see :data:`_BIG_FILE`)."""
        self.entries: list[FileEntry] = []
        for target in dict.fromkeys(targets):
            entry = usage.index.entry(target)
            if entry is None:
                continue
            where = entry.outline.top_positions()
            if len(where) > _BIG_FILE:
                self.big.add(target)
                continue
            self.entries.append(entry)
            for name in where:
                self.names.setdefault(name, []).append(target)
            for key in entry.outline.name_ends():
                self.ends.setdefault(key, []).append(target)
        self._ranked: dict[float, list[tuple[float, Symbol, FileEntry]]] = {}

    def moved_to(self, usage: _Usage) -> _ManyFiles:
        """The same files, for ``usage`` (a later generation that changed none of them)."""
        moved = copy.copy(self)
        moved.usage = usage
        moved._ranked = dict(self._ranked)
        return moved

    def defining(self, names: frozenset[str]) -> set[str]:
        """The files that define any of ``names``."""
        found: set[str] = set()
        if len(names) < len(self.names):
            for name in names:
                files = self.names.get(name)
                if files:
                    found.update(files)
        else:
            for name, files in self.names.items():
                if name in names:
                    found.update(files)
        return found

    def sharing_ends(self, seeds: _Seeds) -> set[str]:
        """The files with a name sharing a first or last word with one near the cursor."""
        found: set[str] = set()
        for key in seeds:
            files = self.ends.get(key)
            if files:
                found.update(files)
        return found

    def ranked(self, base: float) -> list[tuple[float, Symbol, FileEntry]]:
        """Every file's few most used definitions, scored as :func:`_imported_symbols` scores
        names nothing points at, best first (ties in path and line order, as the final ranking
        breaks them)."""
        held = self._ranked.get(base)
        if held is None:
            held = sorted(
                (
                    (round(base + (score - 0.2), 3), sym, entry)
                    for entry in self.entries
                    for sym, score in self.usage.few(entry)
                ),
                key=lambda v: (-v[0], v[2].path, v[1].line),
            )
            self._ranked[base] = held
        return held


_USAGE: dict[int, _Usage] = {}
_POPULAR = 48
_FEW_POPULAR = 4
"""Names offered by each file of a many-file import (a Go package, a C# namespace) beyond
the first few, besides those in use: its most used (gin's ``H``). Measured: C# +2.5 points."""
_BIG_FILE = 96
"""Definitions above which a file offers its used and most popular names only."""


def _memo_usage(index: WorkspaceIndex) -> _Usage:
    generation = index.generation()
    held = _USAGE.get(id(index))
    if held is None or held.index is not index or held.generation != generation:
        if len(_USAGE) > 16:
            _USAGE.clear()
        changes = index.changes_since(held.generation) if held is not None else None
        if held is not None and held.index is index and changes is not None:
            # A file edited in place (the document being typed, indexed again after a
            # pause): what it did not touch carries over, instead of every header's usage
            # being looked up anew on the next keystroke.
            held = _USAGE[id(index)] = held.advanced(generation, *changes)
        else:
            held = _USAGE[id(index)] = _Usage(index, generation)
    return held


_IN_FILE = 0.4
"""Score for a name the current file uses away from the cursor (beyond the window)."""
_BESIDE = 0.3
"""Score for a declaration next to one used near the cursor (half that two away)."""
_SPECIFIC = 0.4
"""Score for a declaration of a module imported whole, divided by the root of its count of
declarations (a two-declaration header is included for one of the two)."""
_WEAK_USE = 0.8
"""Window use below which (a single use some 60 lines away) a name is still ordered by its
workspace usage, as names not used in the window are."""


_MATE = 0.3
"""Score for a name of one of a many-file import's files that defines a name used at the
cursor (its line, the three above and below)."""


_FAMILY = 0.3
"""Score for a name of the same family as one near the cursor (sharing two or more of its
first and last words: ``SASL_MECH_DIGEST_MD5`` beside a use of ``SASL_MECH_CRAM_MD5``, and
``formPostBinding`` below ``formBinding``); half that for two words, all of it for three."""
_COMMON_WORD = 64
"""A first or last word more of a file's names share than this says nothing (``add``)."""


def _kin(a: tuple[str, ...], b: tuple[str, ...]) -> int:
    """How many first and last words two names share (each word counted once)."""
    most = min(len(a), len(b))
    lead = 0
    while lead < most and a[lead] == b[lead]:
        lead += 1
    trail = 0
    while trail < most - lead and a[-1 - trail] == b[-1 - trail]:
        trail += 1
    return lead + trail


_Seeds = dict[tuple[bool, str], list[tuple[str, tuple[str, ...]]]]


def _seed_ends(names: Iterable[str]) -> _Seeds:
    """Names near the cursor by their first and last words (keys as ``name_ends`` makes)."""
    found: _Seeds = {}
    for name in names:
        words = name_words(name)
        if len(words) > 1:
            found.setdefault((True, words[0]), []).append((name, words))
            found.setdefault((False, words[-1]), []).append((name, words))
    return found


def _family(target: FileOutline, seeds: _Seeds) -> dict[str, float]:
    """The score each of ``target``'s names gets for its kinship with a name near the cursor."""
    found: dict[str, float] = {}
    if not seeds:
        return found
    ends = target.name_ends()
    # Whichever side is smaller is walked: a file of ten names, or a cursor with few.
    keys = ends.keys() & seeds.keys() if len(ends) < len(seeds) else seeds.keys() & ends.keys()
    for key in keys:
        kin = ends[key]
        if len(kin) > _COMMON_WORD:
            continue
        for seed, words in seeds[key]:
            for name in kin:
                if name == seed:
                    continue
                shared = _kin(words, name_words(name))
                if shared >= 2:
                    score = _FAMILY * min(shared - 1, 2) / 2
                    if score > found.get(name, 0.0):
                        found[name] = score
    return found


@dataclass(frozen=True)
class _Around:
    """What the request says about any imported file's names, gathered once per request."""

    use: dict[str, float]
    """Uses in the window, nearer ones counting more (:func:`_proximity_use`)."""
    near: set[str]
    """Identifiers of the cursor's line and the few above."""
    co_use: dict[str, float]
    usage: _Usage
    small: bool
    in_file: frozenset[str]
    """Names the file uses anywhere (beyond the window too)."""
    seeds: _Seeds
    """Names around the cursor by first and last word, for :func:`_family`."""
    pointed: frozenset[str]
    """Every name the request points at (near, in the window, in code like it, in the file):
    the others of an imported file score by their workspace usage alone."""
    dynamic: frozenset[str]
    """The pointed names but those the file uses only far from the cursor."""


def _demotion(ref: ImportRef, around: _Around) -> float:
    """Names imported for annotations only (`import type`, `if TYPE_CHECKING:`) are rarely what
    the next line calls: behind the others when the budget is small."""
    return 0.6 if around.small and ref.kind == "type" else 0.0


def _imported_symbols(
    ref: ImportRef,
    target: FileOutline,
    around: _Around,
    only: set[str] | None = None,
    lift: float = 0.0,
    unused: set[str] | frozenset[str] = frozenset(),
    alone: bool = False,
    keep: Callable[[str], bool] | None = None,
    mate: float = 0.0,
) -> list[tuple[Symbol, float]]:
    """The names of ``target`` an import ``ref`` offers, with their scores; those ``keep``
    refuses left out. ``mate`` is the hint each name gets for sharing its file with a name
    used at the cursor."""
    use, near, co_use, in_file = around.use, around.near, around.co_use, around.in_file
    every = target.top_level()
    # Declarations are grouped by topic (``incrRefCount`` beside ``decrRefCount``, ``C_OK``
    # beside ``C_ERR``): those next to one used around the cursor are likely next.
    beside: dict[str, float] = {}
    if len(every) <= len(use) + len(near):
        anchors = [i for i, sym in enumerate(every) if sym.name in near or sym.name in use]
    else:  # a big header: look the few names in use up
        where = target.top_positions()
        anchors = [i for name in {*use, *near} for i in where.get(name, ())]
    for i in anchors:
        for d in (-2, -1, 1, 2):
            if 0 <= i + d < len(every):
                other = every[i + d].name
                beside[other] = max(beside.get(other, 0.0), _BESIDE / abs(d))
    family = _family(target, around.seeds)
    top: Sequence[int]  # indexes into ``every``
    if only is None:
        top = range(len(every))
    elif len(every) <= len(only) + len(beside) + len(family) + 64:
        top = [
            i
            for i, s in enumerate(every)
            if s.name in only or s.name in beside or s.name in in_file or s.name in family
        ]
    else:  # a big header: its names worth offering are looked up, not its declarations scanned
        where = target.top_positions()
        top = sorted(
            {i for group in (only, beside, family) for n in group for i in where.get(n, ())}.union(
                around.usage.positions_of(target, in_file)
            )
        )
    named = {n for n in ref.names if n != "*"}
    chosen: Sequence[int] = [i for i in top if every[i].name in named]
    explicit = bool(chosen)
    if not chosen:
        chosen = top  # a module imported whole, a wildcard, or a name that is a submodule
    demote = _demotion(ref, around)
    # A file imported whole for one of a few names: each is likelier than one of hundreds.
    specific = _SPECIFIC / math.sqrt(len(every)) if alone and every else 0.0
    base = (1.0 if explicit else 0.3) - demote + lift

    def score_of(name: str) -> float:
        score = base
        if name in near or name in unused:
            score += 1.0
        used = use.get(name, 0.0)
        co = co_use.get(name, 0.0)
        # A use beyond the window (or beside one, or of the same family) says as much as a
        # use far up the window: whichever says more counts.
        hint = 0.0
        if name not in near:
            hint = max(
                beside.get(name, 0.0),
                _IN_FILE if name in in_file else 0.0,
                family.get(name, 0.0),
                mate,
            )
        score += max(0.5 * min(used, 4.0), hint)
        score += 0.4 * min(co, 3.0)
        if not explicit and used == 0:
            score += around.usage(name) - (0.2 if co == 0 else 0.0) + specific
        elif not explicit and used < _WEAK_USE:
            score += around.usage(name) + specific
        return round(score, 3)

    if explicit:
        offered = (every[i] for i in chosen)
        return [(s, score_of(s.name)) for s in offered if keep is None or keep(s.name)]
    # Most of a header's names nothing in the request points at: their score is the same sum,
    # only the workspace's usage of each name differing (looked up once per file and index).
    # Names the file uses only far from the cursor score alike too, a hint above the rest.
    dynamic = around.dynamic
    static = around.usage.unpointed(target, base, specific)
    far = around.usage.unpointed(target, base + _IN_FILE, specific)
    scored = []
    for i in chosen:
        sym = every[i]
        name = sym.name
        if keep is not None and not keep(name):
            continue
        if mate or name in dynamic or name in beside or name in family or name in unused:
            scored.append((sym, score_of(name)))
        elif name in in_file:
            scored.append((sym, far[i]))
        else:
            scored.append((sym, static[i]))
    return scored


def _definitions(index: WorkspaceIndex, req: Request, names: tuple[str, ...]) -> list[_Candidate]:
    out: list[_Candidate] = []
    wanted = set(names)
    in_tests = is_test_path(req.path) if req.path else None
    here = req.path.rsplit("/", 1)[0] if req.path and "/" in req.path else ""
    # A Go file names another package's functions, types and constants only through an
    # import (which the import source covers): only methods and fields are found by name,
    # and another package's only when exported.
    info = language_for(req.language, req.path)
    members_only = info is not None and info.name == "go"
    for rank, name in enumerate(names[:12]):
        found = sorted(
            ((p, s) for p, s in index.definitions(name) if p != req.path),
            key=lambda ps: (ps[0], ps[1].line),
        )
        if not found:
            continue
        weight = 1.0 / (1.0 + 0.25 * rank) / math.sqrt(len(found))
        files: set[str] = set()
        said: set[str] = set()
        for path, sym in found:
            entry = index.entry(path)
            if entry is None or path in files:
                continue  # one definition per file: overloads and `#ifdef` variants say the same
            if members_only and (
                not sym.parent or (path.rpartition("/")[0] != here and not _go_exported(sym.name))
            ):
                continue
            head = sym.signature.split("\n", 1)[0].rstrip(" ;{")
            if head in said:
                continue  # a C header's declaration says what the .c file's definition does
            said.add(head)
            files.add(path)
            if len(files) > 6:
                break
            bonus = 0.2 if here and path.startswith(here + "/") else 0.0
            if in_tests is False and is_test_path(path):
                bonus -= 0.5 * weight  # a fixture's `enum Command` is not the one meant
            if sym.kind in outlines.CONTAINER_KINDS:
                bonus += 0.1
            text = _render(entry, sym, wanted)
            out.append(
                _Candidate(
                    "definition",
                    path,
                    sym.line,
                    sym.end_line,
                    text,
                    round(weight + bonus, 3),
                    (path, sym.line),
                    _brief(sym, entry.language),
                    sym.name,
                )
            )
    return out


def _lines_of(index: WorkspaceIndex, req: Request, path: str) -> list[str] | None:
    if req.open_lines is not None:
        lines = req.open_lines(index.root / path)
        if lines is not None:
            return lines
    return index.read_lines(path)


@dataclass(frozen=True)
class _Neighbour:
    """A window of another file like the lines before the cursor, with its text."""

    path: str
    start: int
    end: int
    score: float
    text: str
    following: str = ""
    """The lines after the window: what code like the cursor's went on to use."""


def _neighbours(index: WorkspaceIndex, req: Request) -> list[_Neighbour]:
    """The windows of other files most like the lines before the cursor, best first."""
    query = identifiers("\n".join(req.before.split("\n")[-QUERY_LINES:]))
    out = []
    for m in index.similar(query, k=NEIGHBOURS, exclude=req.path):
        lines = _lines_of(index, req, m.path)
        if not lines:
            continue
        end = min(m.end_line, len(lines) - 1)
        text = "".join(lines[m.start_line : end + 1])
        if text.strip():
            following = "".join(lines[end + 1 : end + 1 + FOLLOWING_LINES])
            out.append(_Neighbour(m.path, m.start_line, end, m.score, text, following))
    return out


def _co_use(neighbours: list[_Neighbour]) -> dict[str, float]:
    """What code like the cursor's uses: each identifier of the neighbouring windows, weighted
    by how alike its window is (the best window counts 1). Code that looks like the lines
    before the cursor tends to call the same functions next (RepoCoder's premise), so these
    names rank imports and definitions that nothing near the cursor names yet."""
    if not neighbours:
        return {}
    best = max(n.score for n in neighbours) or 1.0
    use: dict[str, float] = {}
    for n in neighbours:
        weight = n.score / best
        for ident in _text_identifiers(n.text) | _text_identifiers(n.following):
            use[ident] = use.get(ident, 0.0) + weight
    return use


_TEXT_IDENTS: dict[str, frozenset[str]] = {}


def _text_identifiers(text: str) -> frozenset[str]:
    """:func:`identifiers` of a window of other code, remembered: the windows most like the
    code being typed stay the same from one line to the next."""
    found = _TEXT_IDENTS.get(text)
    if found is None:
        if len(_TEXT_IDENTS) > 4096:
            _TEXT_IDENTS.clear()
        found = _TEXT_IDENTS[text] = frozenset(identifiers(text))
    return found


_CO_USED_NAMES = 6


def _co_used_names(
    index: WorkspaceIndex, co_use: dict[str, float], near: tuple[str, ...], path: str | None
) -> tuple[str, ...]:
    """The most co-used names that other files define, after the near ones."""
    ranked = sorted(co_use.items(), key=lambda kv: (-kv[1], kv[0]))
    out: list[str] = []
    for name, _ in ranked[: 8 * _CO_USED_NAMES]:
        if name not in near and len(name) > 2 and index.defined_elsewhere(name, path):
            out.append(name)
            if len(out) >= _CO_USED_NAMES:
                break
    return tuple(out)


def _similar(neighbours: list[_Neighbour], req: Request) -> list[_Candidate]:
    return [
        _Candidate("similar", n.path, n.start, n.end, n.text, n.score, (n.path, -1 - n.start))
        for n in neighbours
        if n.text.strip() not in req.before
    ]


def _recent(ring: RecentRing, req: Request) -> list[_Candidate]:
    out = []
    window = req.before + req.after
    for age, chunk in enumerate(ring.chunks()):
        if chunk.text.strip() and chunk.text.strip() in window:
            continue  # already in the prompt as the current file's own text
        if chunk.uri == req.uri and abs(chunk.start_line - req.line) < 2 * len(
            chunk.text.split("\n")
        ):
            continue
        score = round((1.0 if chunk.edited else 0.6) / (1 + age), 3)
        out.append(
            _Candidate(
                "recent",
                chunk.path,
                chunk.start_line,
                chunk.end_line,
                chunk.text,
                score,
                (chunk.path, -10_000 - chunk.start_line),
            )
        )
    return out


# -- budget ----------------------------------------------------------------------------------


_RENDERED: dict[tuple[str, str, int, str, tuple[str, ...]], str] = {}
SHOWN_MEMBERS = 10
"""Members of a class shown in its outline: those used around the cursor first."""


def _render(entry: FileEntry, sym: Symbol, wanted: set[str] | frozenset[str] = frozenset()) -> str:
    """A definition's outline, remembered per file version (the same imports are rendered
    again on every line). A class shows at most :data:`SHOWN_MEMBERS` members, those named
    in ``wanted`` (used around the cursor or in code like it) first, then in source order."""
    every = outlines.members(sym, entry.outline.symbols)
    if len(every) > SHOWN_MEMBERS:
        first = [m for m in every if m.name in wanted][:SHOWN_MEMBERS]
        picked = {id(m) for m in first}
        rest = [m for m in every if id(m) not in picked][: SHOWN_MEMBERS - len(first)]
        keep = {id(m) for m in first + rest}
        every = [m for m in every if id(m) in keep]
    key = (entry.path, entry.digest, sym.line, sym.name, tuple(m.name for m in every))
    text = _RENDERED.get(key)
    if text is None:
        if len(_RENDERED) > 20_000:
            _RENDERED.clear()
        text = _RENDERED[key] = outlines.render(
            sym, entry.outline.symbols, entry.language, chosen=every
        )
    return text


_BRIEFS: dict[int, tuple[Symbol, str, str]] = {}


def _brief(sym: Symbol, language: str) -> Callable[[], str]:
    def render() -> str:
        held = _BRIEFS.get(id(sym))
        if held is None or held[0] is not sym or held[1] != language:
            if len(_BRIEFS) > 20_000:
                _BRIEFS.clear()
            held = _BRIEFS[id(sym)] = (
                sym,
                language,
                outlines.render(sym, (), language, brief=True),
            )
        return held[2]

    return render


def _optimistic(text: str) -> int:
    """A count no tokenizer goes below by much (5 bytes per token, where code averages 3-4)."""
    return len(text) // 5


def _code_lines(text: str) -> int:
    """Lines that say something: not blank, not a preprocessor line."""
    return sum(1 for line in text.split("\n") if line.strip() and not line.lstrip().startswith("#"))


def _covered(cand: _Candidate, chosen: dict[str, list[_Candidate]]) -> bool:
    """Shown already: an outline inside a chosen outline (a method of a chosen class), or code
    overlapping chosen code of the same file (a similar window over a recent edit).
    ``chosen`` holds the chosen candidates by path."""
    same = chosen.get(cand.path)
    if not same:
        return False
    if cand.kind not in _OUTLINE_KINDS:
        if any(
            c.kind not in _OUTLINE_KINDS and c.start <= cand.end and cand.start <= c.end
            for c in same
        ):
            return True
        if cand.kind == "recent":
            return False  # an edit is newer than the indexed outline of the same lines
        # A window over declarations the outlines show already (a small header's whole text).
        shown = sum(
            min(c.end, cand.end) - max(c.start, cand.start) + 1
            for c in same
            if c.kind in _OUTLINE_KINDS and c.start <= cand.end and cand.start <= c.end
        )
        return shown * 2 >= _code_lines(cand.text)
    return any(
        c.kind in _OUTLINE_KINDS and c.start <= cand.start and cand.end <= c.end and c is not cand
        for c in same
    )


_OUTLINE_KINDS = ("import", "definition")


_COUNT_AHEAD = 8
"""Candidates whose token counts are asked for in one call (see ``Request.count_ahead``)."""


def _fill(pools: dict[str, list[_Candidate]], req: Request) -> list[Segment]:
    """Best-scored candidates of each source within its share; unused shares are passed on."""
    costs: dict[int, int] = {}
    headed: dict[tuple[str, str], int] = {}
    """(source, path) of each segment begun, and the candidate that pays for its header."""

    def cost_of(c: _Candidate) -> int:  # counted only when considered: tokenizing is the cost
        if id(c) not in costs:
            lines = c.text.count("\n") + (not c.text.endswith("\n"))
            costs[id(c)] = req.count_tokens(c.text) + math.ceil(req.line_cost * lines)
        payer = headed.get((c.kind, c.path))
        if payer is None or payer == id(c):
            # The segment's header (its path) is paid once, by its first part.
            return costs[id(c)] + req.count_tokens(c.path) + req.segment_cost
        return costs[id(c)]

    chosen: dict[str, list[_Candidate]] = {kind: [] for kind in KIND_ORDER}
    chosen_in: dict[str, list[_Candidate]] = {}
    """The chosen candidates by path, for :func:`_covered`."""
    spent = dict.fromkeys(KIND_ORDER, 0)
    picked: set[int] = set()
    for kind in KIND_ORDER:
        pools[kind].sort(key=lambda c: (-c.score, c.path, c.start))
    # First pass: each source within its share. Second: whatever is left, in source order,
    # except that the user's recent edits come before windows that only look like the code
    # (a window over an edited region would show its old text).
    ahead = dict.fromkeys(KIND_ORDER, 0)
    """How far down each pool the texts were counted ahead (``req.count_ahead``)."""
    for pass_budget in ("share", "rest"):
        for kind in _FILL_ORDER:
            if pass_budget == "share":
                limit = int(req.budget * SHARES[kind])
            else:
                limit = spent[kind] + req.budget - sum(spent.values())
            for i, cand in enumerate(pools[kind]):
                if limit - spent[kind] < _MIN_USEFUL:
                    break
                if id(cand) in picked or _covered(cand, chosen_in):
                    continue
                room = limit - spent[kind]
                fits = _optimistic(cand.text) <= room
                if not fits and cand.brief is None:
                    continue  # cannot fit: not worth tokenizing
                if req.count_ahead is not None and i >= ahead[kind] and id(cand) not in costs:
                    # This candidate and the next few that could fit, counted in one call.
                    batch = [c for c in pools[kind][i : i + _COUNT_AHEAD] if id(c) not in picked]
                    req.count_ahead(
                        [c.text for c in batch if _optimistic(c.text) <= room]
                        + [c.path for c in batch]
                    )
                    ahead[kind] = i + _COUNT_AHEAD
                cost = cost_of(cand) if fits else room + 1
                if spent[kind] + cost > limit and cand.brief:
                    # The whole outline does not fit: its signature alone may.
                    cand.text, cand.brief = cand.brief(), None
                    costs.pop(id(cand), None)
                    if _optimistic(cand.text) > room:
                        continue
                    cost = cost_of(cand)
                if spent[kind] + cost <= limit:
                    chosen[kind].append(cand)
                    chosen_in.setdefault(cand.path, []).append(cand)
                    picked.add(id(cand))
                    spent[kind] += cost
                    headed.setdefault((kind, cand.path), id(cand))
                    costs[id(cand)] = cost
    segments: list[Segment] = []
    for kind in KIND_ORDER:
        # One segment per file and source, its parts in source order; files by path, so the
        # prompt's start does not move when scores shift.
        by_path: dict[str, list[_Candidate]] = {}
        for cand in chosen[kind]:
            by_path.setdefault(cand.path, []).append(cand)
        paths = sorted(by_path) if kind in ("import", "definition") else list(by_path)
        for path in paths:
            parts = sorted(by_path[path], key=lambda c: c.start)
            text = "".join(p.text if p.text.endswith("\n") else p.text + "\n" for p in parts)
            segments.append(
                Segment(
                    kind=kind,
                    path=path,
                    start_line=min(p.start for p in parts) + 1,
                    end_line=max(p.end for p in parts) + 1,
                    text=text,
                    tokens=sum(costs[id(p)] for p in parts),
                    score=max(p.score for p in parts),
                )
            )
    return segments
