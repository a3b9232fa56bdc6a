"""Cross-file retrieval end to end below the server: a fixture repository, the real index, the
real engine and prompt templates, the test backend."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from starcoder_ls.context.crossfile import CrossFileContext, Request
from starcoder_ls.context.index import WorkspaceIndex
from starcoder_ls.context.recent import RecentRing
from starcoder_ls.documents import Snapshot
from starcoder_ls.engine import CompletionEngine
from starcoder_ls.settings import Settings, WorkspaceSettings

MODELS = '''\
"""Domain objects of the shop."""


class Cart:
    """A shopping cart: items by SKU with quantities."""

    def add_item(self, sku: str, qty: int = 1) -> None:
        self.items[sku] = self.items.get(sku, 0) + qty

    def total(self) -> float:
        """Sum of the prices of every item."""
        return sum(PRICES[s] * q for s, q in self.items.items())


class Customer:
    def __init__(self, name: str) -> None:
        self.name = name
'''

PRICING = '''\
def apply_discount(amount: float, code: str) -> float:
    """Price after a discount code (unknown codes change nothing)."""
    return amount * RATES.get(code, 1.0)


def tax_for(region: str) -> float:
    return 0.2
'''

MAIN = """\
from shop.models import Cart
from shop.pricing import apply_discount


def checkout(cart: Cart, code: str) -> float:
    subtotal = cart.total()
    return apply_discount(
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "shopapp"
    (root / "shop").mkdir(parents=True)
    (root / "app").mkdir()
    (root / "shop" / "__init__.py").write_text("")
    (root / "shop" / "models.py").write_text(MODELS)
    (root / "shop" / "pricing.py").write_text(PRICING)
    (root / "app" / "main.py").write_text(MAIN)
    (root / ".env").write_text("API_KEY=planted-secret-value\n")
    return root


def _index(root: Path) -> WorkspaceIndex:
    index = WorkspaceIndex(root, WorkspaceSettings(persist=False))
    index.build()
    return index


def _engine(index: WorkspaceIndex, family: str = "starcoder2", **kw) -> CompletionEngine:
    engine = CompletionEngine(Settings(backend="test", model="test", family=family, **kw))
    engine.crossfile = CrossFileContext(lambda uri: index, RecentRing())
    return engine


def _request(repo: Path, rel: str, before: str, *, line: int = 6, budget: int = 300) -> Request:
    """A retrieval request at the end of ``before`` in ``rel``, tokens counted as chars / 4."""
    return Request(
        uri=(repo / rel).as_uri(),
        path=rel,
        language="python",
        before=before,
        after="\n",
        line=line,
        budget=budget,
        count_tokens=lambda s: len(s) // 4 + 1,
    )


def _snapshot(root: Path, rel: str, text: str | None = None) -> Snapshot:
    path = root / rel
    return Snapshot.from_text(text or path.read_text(), uri=path.as_uri(), path=str(path))


def test_index_holds_outlines_symbols_and_resolves_imports(repo):
    index = _index(repo)
    assert index.paths() == ["app/main.py", "shop/__init__.py", "shop/models.py", "shop/pricing.py"]
    ((path, sym),) = index.definitions("apply_discount")
    assert path == "shop/pricing.py" and sym.kind == "function"
    entry = index.entry("app/main.py")
    assert entry is not None
    targets = {
        t for ref in entry.outline.imports for t in index.resolve(ref, "app/main.py", "python")
    }
    assert targets == {"shop/models.py", "shop/pricing.py"}


def test_prompt_contains_imported_definitions_in_repository_format(repo):
    index = _index(repo)
    engine = _engine(index)
    snap = _snapshot(repo, "app/main.py")
    built = engine.build_prompt(snap, 6, len("    return apply_discount("), root=repo)
    text = built.prompt.text
    assert "<file_sep>shop/pricing.py\n" in text and "<file_sep>shop/models.py\n" in text
    assert "def apply_discount(amount: float, code: str) -> float:" in text
    assert "class Cart:" in text and "def total(self) -> float:" in text
    imported = [s for s in built.prompt.segments if s.kind == "import"]
    assert not any("RATES.get" in s.text for s in imported)  # outlines, not bodies
    assert "planted-secret-value" not in text
    # Context comes before the current file, which stays last and whole.
    assert text.index("shop/pricing.py") < text.index("<file_sep><fim_prefix>app/main.py")
    # A method of a class already shown is not repeated as a definition of its own.
    assert not [s for s in built.prompt.segments if s.kind == "definition" and "total" in s.text]
    kinds = {(s.kind, s.path) for s in built.prompt.segments}
    assert ("import", "shop/pricing.py") in kinds and ("import", "shop/models.py") in kinds
    seg = next(s for s in built.prompt.segments if s.path == "shop/pricing.py")
    assert seg.start_line == 1 and seg.tokens > 0 and seg.score > 0


def test_non_repository_family_gets_path_comments(repo):
    engine = _engine(_index(repo), family="codellama")
    built = engine.build_prompt(_snapshot(repo, "app/main.py"), 6, 26, root=repo)
    assert "# Path: shop/pricing.py" in built.prompt.text
    assert "# def apply_discount(amount: float, code: str) -> float:" in built.prompt.text


def test_definitions_of_identifiers_near_the_cursor_without_imports(repo):
    (repo / "app" / "report.py").write_text("def summary(c):\n    c = Customer(\n")
    index = _index(repo)
    ctx = CrossFileContext(lambda uri: index)
    segs = ctx.segments(
        _request(repo, "app/report.py", "def summary(c):\n    c = Customer(", line=1, budget=400)
    )
    found = [s for s in segs if s.kind == "definition"]
    seg = max(found, key=lambda s: s.score)  # what code like this one uses may follow it
    assert seg.path == "shop/models.py" and "class Customer:" in seg.text
    assert "def __init__(self, name: str) -> None:" in seg.text


def test_budget_is_respected_and_lowest_scores_go_first(repo):
    index = _index(repo)
    ctx = CrossFileContext(lambda uri: index)
    before = MAIN.rstrip("\n")
    full = ctx.segments(_request(repo, "app/main.py", before, line=6, budget=2000))
    small = CrossFileContext(lambda uri: index).segments(
        _request(repo, "app/main.py", before, line=6, budget=60)
    )
    assert sum(s.tokens for s in small) <= 60 < sum(s.tokens for s in full)
    assert any("apply_discount" in s.text for s in small)  # used at the cursor: kept


def test_context_is_reused_between_keystrokes_on_one_line(repo):
    index = _index(repo)
    ctx = CrossFileContext(lambda uri: index)
    first = ctx.segments(_request(repo, "app/main.py", MAIN + "    return apply_discount(sub"))
    again = ctx.segments(_request(repo, "app/main.py", MAIN + "    return apply_discount(subt"))
    assert again is first  # same line, same resolvable names: the prompt's start is unchanged
    index.update(
        "shop/pricing.py", PRICING + "\n\ndef coupon(code: str) -> str:\n    return code\n"
    )
    after_edit = ctx.segments(
        _request(repo, "app/main.py", MAIN + "    return apply_discount(subt")
    )
    assert after_edit is not first


def test_cli_prompt_json_lists_cross_file_segments(repo, capsys):
    from starcoder_ls.cli import main

    code = main(
        [
            "prompt",
            f"{repo / 'app' / 'main.py'}:7:27",
            "--workspace",
            str(repo),
            "--backend",
            "test",
            "--family",
            "starcoder2",
            "--json",
        ]
    )
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    segs = {(s["kind"], s["path"]) for s in out["segments"]}
    assert ("import", "shop/pricing.py") in segs and ("prefix", "app/main.py") in segs
    for s in out["segments"]:
        assert {"kind", "path", "start_line", "end_line", "tokens", "score"} <= set(s)
    assert "def apply_discount" in out["prompt"]


def test_eval_command_measures_definition_recall(repo, capsys):
    from starcoder_ls.cli import main

    (repo / "app" / "more.py").write_text(
        "from shop import pricing\nfrom shop.models import Customer\n\n\n"
        "def greet(name):\n    who = Customer(name)\n    return who\n\n\n"
        "def price(amount):\n    return pricing.tax_for('eu') * amount\n"
    )
    args = ["eval", "--workspace", str(repo), "--backend", "test", "--family", "starcoder2"]
    assert main([*args, "--json", "--details", "--model", "test:reply=x"]) == 0
    out = json.loads(capsys.readouterr().out)
    symbols = sorted(d["symbol"] for d in out["details"])
    # Uses of imported names, by name and through a module; never the import lines themselves.
    assert symbols == ["Customer", "apply_discount", "tax_for"]  # not in def headers
    assert out["recall_with"] == 1.0 and out["recall_without"] == 0.0
    assert out["exact_with"] == 0.0 and 0.0 <= out["edit_sim_with"] <= 1.0
    for d in out["details"]:
        assert d["completion_with"] == "x"
    assert main([*args, "--recall-only"]) == 0
    text = capsys.readouterr().out
    assert "definition recall  with context 100.0%" in text
    # The hidden lines were put back: the index and the files are as before.
    assert "def greet(name):" in (repo / "app" / "more.py").read_text()


def test_cross_file_context_fills_its_budget_as_the_template_frames_it(tmp_path):
    """A header of 80 declarations the file calls: the other files' text fills most of
    crossFileTokens and stays within it, counted as the template frames it (each file's path
    once; in a commented layout, each line's comment marker too)."""
    root = tmp_path / "c"
    root.mkdir()
    decls = "".join(
        f"int table_op{i:02d}(struct table *t, int key, int flags);\n" for i in range(80)
    )
    (root / "table.h").write_text(decls)
    calls = "".join(f"    n += table_op{i:02d}(t, key, 0);\n" for i in range(0, 80, 2))
    text = f'#include "table.h"\n\nint run(struct table *t, int key) {{\n    int n = 0;\n{calls}'
    (root / "run.c").write_text(text + "    \n    return n;\n}\n")
    index = _index(root)
    line = text.count("\n")
    for family in ("starcoder2", "codellama", "left-to-right"):
        engine = _engine(index, family=family, cross_file_tokens=200)
        built = engine.build_prompt(_snapshot(root, "run.c"), line, 4, root=root)
        other = [s for s in built.prompt.segments if s.path == "table.h"]
        assert other, family
        spent = sum(s.tokens for s in other)
        assert 150 <= spent <= 200, (family, spent)
