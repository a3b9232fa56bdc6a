"""``starcoder-ls eval lines`` and ``eval compare``: held-out lines of a workspace through the
real engine, with and without cross-file context, for local models and a team server."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

from starcoder_ls.cli import main

sys.path.insert(0, str(Path(__file__).parents[1] / "serve"))
from serve_helpers import ServeProcess

PRICING = '''\
def apply_member_discount(amount: float, member_id: int) -> float:
    """Members pay 10% less."""
    return amount * 0.9
'''

CHECKOUT = """\
from shop.pricing import apply_member_discount


def checkout(amount: float, member_id: int) -> float:
    discounted = apply_member_discount(amount, member_id)
    return round(discounted, 2)
"""

SETTINGS = """\
TIMEOUT_SECONDS = 30
RETRY_LIMIT = 5
PLANTED_CONSTANT_FOR_THE_LEAK_CHECK = 1234567
"""

# The test backend answers with the name of a function whose definition the prompt shows
# (``pick``): a stand-in for a model that uses its context.
PICK = "pick=" + quote(r"def (apply_\w+)")


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "shop-app"
    (root / "shop").mkdir(parents=True)
    (root / "shop" / "__init__.py").write_text("")
    (root / "shop" / "pricing.py").write_text(PRICING)
    (root / "shop" / "settings.py").write_text(SETTINGS)
    (root / "checkout.py").write_text(CHECKOUT)
    (root / ".env").write_text("API_KEY=planted-secret-value\n")
    return root


def _lines(capsys, *args: str) -> dict:
    assert main(["eval", *args, "--json", "--details"]) == 0
    return json.loads(capsys.readouterr().out)


def test_lines_compares_with_and_without_context_on_the_users_code(workspace, capsys):
    before = {p: p.read_text() for p in workspace.rglob("*") if p.is_file()}
    report = _lines(
        capsys, "lines", "--workspace", str(workspace), "--backend", "test", "--model", PICK
    )
    rows = {(r["model"], r["setting"]): r for r in report["rows"]}
    label = report["rows"][0]["model"]
    assert label == f"test:{PICK}"  # the backend's model id
    with_context, without = rows[(label, "with context")], rows[(label, "without context")]
    assert report["suite"] == "lines" and report["samples"] == with_context["samples"] > 0
    assert {("baseline: empty", ""), ("baseline: repeat previous line", "")} <= set(rows)
    # Only the other file shows the definition, so only cross-file context lets the stand-in
    # model name it.
    ids = {d["id"] for d in report["details"]}
    assert "checkout.py:5" in ids
    line5 = {d["setting"]: d for d in report["details"] if d["id"] == "checkout.py:5"}
    assert line5["with context"]["fill"] == "apply_member_discount"
    assert line5["without context"]["fill"] == ""
    assert with_context["edit_similarity"] > without["edit_similarity"]
    assert with_context["prompt_tokens"] > without["prompt_tokens"]
    # The credentials file is never sampled; nothing on disk changed.
    assert not any(i.startswith(".env") for i in ids)
    assert before == {p: p.read_text() for p in workspace.rglob("*") if p.is_file()}


def test_each_setting_asks_the_model_at_every_hole(tmp_path, capsys):
    """The engine serves the rest of a completion it showed at the same place while the user
    types it; the second setting's run at a hole must not be served the first one's answer."""
    (tmp_path / "one.py").write_text("RETRIES = 3\n")
    report = _lines(
        capsys, "lines", "--workspace", str(tmp_path), "--backend", "test", "--model", "reply=x"
    )
    asked = [d for d in report["details"] if not d["model"].startswith("baseline")]
    assert [d["setting"] for d in asked] == ["with context", "without context"]
    assert all(d["prompt_tokens"] > 0 and d["fill"] == "x" for d in asked), asked


def test_a_hidden_line_never_reaches_the_prompt(workspace, capsys):
    """A stand-in model that answers with the hidden line whenever the prompt holds it."""
    pick = "pick=" + quote(r"(PLANTED_CONSTANT_FOR_THE_LEAK_CHECK = \d+)")
    report = _lines(
        capsys, "lines", "--workspace", str(workspace), "--backend", "test", "--model", pick
    )
    planted = [d for d in report["details"] if d["id"] == "shop/settings.py:3"]
    assert {d["setting"] for d in planted} >= {"with context", "without context"}
    model = report["rows"][0]["model"]
    for d in planted:
        if d["model"] == model:
            assert d["fill"] == "" and not d["exact"], d
    # Elsewhere the line is in the prompt, and the stand-in does repeat it.
    assert any(d["fill"].startswith("PLANTED") for d in report["details"] if d["model"] == model)


def test_compare_puts_a_local_model_and_a_team_server_in_one_table(workspace, tmp_path, capsys):
    server = ServeProcess(["--backend", "test", "--model", PICK], log=tmp_path / "serve.log")
    try:
        chart = tmp_path / "compare.png"
        report = _lines(
            capsys,
            "compare", "--workspace", str(workspace), "--backend", "test",
            "--model", PICK, "--model", server.url, "--chart", str(chart),
        )  # fmt: skip
    finally:
        server.stop()
    models = report["info"]["models"]
    assert models[PICK]["backend"] == "test"
    assert models[server.url]["backend"] == "starcoder-ls"
    rows = {(r["model"], r["setting"]): r for r in report["rows"]}
    assert len(rows) == 6  # 2 models x 2 settings, and the 2 baselines
    for setting in ("with context", "without context"):
        local, remote = rows[(PICK, setting)], rows[(server.url, setting)]
        assert local["exact_match"] == remote["exact_match"]
        assert local["samples"] == remote["samples"] == report["samples"]
        assert remote["latency_p50_ms"] > 0
    assert (
        rows[(server.url, "with context")]["edit_similarity"]
        > rows[(server.url, "without context")]["edit_similarity"]
    )
    assert chart.read_bytes()[:4] == b"\x89PNG"


def test_eval_with_no_suite_is_still_recall(workspace, capsys):
    args = ["eval", "--workspace", str(workspace), "--backend", "test", "--recall-only"]
    assert main(args) == 0
    assert "definition recall" in capsys.readouterr().out


def test_a_hole_the_backend_fails_on_is_counted_and_the_run_goes_on(workspace, capsys):
    flaky = "error=" + quote("the GPU fell off") + "&error_every=3"
    assert main(["eval", "lines", "--workspace", str(workspace), "--backend", "test",
                 "--model", flaky, "--output", str(workspace.parent / "r.json")]) == 0  # fmt: skip
    assert "errors" in capsys.readouterr().out  # a column of the table
    report = json.loads((workspace.parent / "r.json").read_text())
    row = report["rows"][0]
    assert row["errors"] == row["samples"] // 3 and row["latency_p50_ms"] is not None
    assert report["rows"][-1]["errors"] is None  # the baselines never fail


def test_bad_workspaces_and_dead_servers_get_one_clear_line(tmp_path, capsys):
    assert main(["eval", "lines", "--workspace", str(tmp_path / "nope"), "--backend", "test"]) == 1
    assert "is not a directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["eval", "lines", "--workspace", str(tmp_path / "empty"), "--backend", "test"]) == 1
    assert "no file of this workspace has a line to hide" in capsys.readouterr().err
    (tmp_path / "empty" / "a.py").write_text("x = 1\n")
    dead = "http://127.0.0.1:9"  # the discard port: nothing listens
    code = main(
        ["eval", "compare", "--workspace", str(tmp_path / "empty"), "--model", dead,
         "--timeout-ms", "500"]
    )  # fmt: skip
    assert code == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("starcoder-ls: error: the backend failed:") and "127.0.0.1:9" in last
