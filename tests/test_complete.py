"""``starcoder-ls complete`` with the bundled offline model, through the real command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from starcoder_ls.models import BUNDLED_GGUF

from starcoder_ls.complete import Position, parse_position, split_at
from starcoder_ls.types import UserError

ROOT = Path(__file__).resolve().parents[1]


def scl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "starcoder_ls", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )


def test_positions_are_one_based_and_clamped() -> None:
    assert parse_position("a/b.py:3:7") == Position(Path("a/b.py"), 3, 7)
    assert parse_position("C:/x.py:1:1").file == Path("C:/x.py")
    with pytest.raises(UserError, match="FILE:LINE:COL"):
        parse_position("file.py:3")
    with pytest.raises(UserError, match="1-based"):
        parse_position("file.py:0:1")
    text = "ab\ncdé\n"
    assert split_at(text, Position(Path("f"), 2, 3)) == ("ab\ncd", "é\n")
    assert split_at(text, Position(Path("f"), 2, 99)) == ("ab\ncdé", "\n")
    with pytest.raises(UserError, match="out of range"):
        split_at(text, Position(Path("f"), 9, 1))


def test_bundled_model_is_there_and_small() -> None:
    assert BUNDLED_GGUF.is_file(), "run `make bundled-model` to rebuild models/starcoder-ls-tiny"
    total = sum(p.stat().st_size for p in BUNDLED_GGUF.parent.rglob("*") if p.is_file())
    assert total < 30 * 1024 * 1024


def test_complete_with_the_bundled_model(tmp_path: Path) -> None:
    src = tmp_path / "stats.py"
    src.write_text(
        "import math\n\n\ndef mean(values):\n    total = sum(values)\n    return total / len(values)\n\n\n"
        "def stdev(values):\n    m = mean(values)\n    return math.sqrt(sum((x - m) ** 2 for x in values) / \n"
    )
    proc = scl("complete", f"{src}:11:74", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert set(result) >= {"completion", "model", "latency_ms", "prompt_tokens", "cached"}
    assert result["model"].endswith("Q8_0.gguf") and result["cached"] is False
    assert result["prompt_tokens"] > 50 and result["completion"].strip()
    # Deterministic (greedy): the same request gives the same completion.
    again = json.loads(scl("complete", f"{src}:11:74", "--json").stdout)
    assert again["completion"] == result["completion"]


def test_complete_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    binary = tmp_path / "blob.py"
    binary.write_bytes(b"\x00\x01\x02" * 100)
    for args, message in [
        ((f"{tmp_path}/missing.py:1:1",), "no such file"),
        ((f"{binary}:1:1",), "looks binary"),
        ((f"{ROOT}/examples/demo.py:999:1",), "out of range"),
        ((f"{ROOT}/examples/demo.py:1:1", "--model", str(binary)), "not a GGUF file"),
    ]:
        proc = scl("complete", *args)
        assert proc.returncode == 1, proc.stderr
        assert message in proc.stderr and "Traceback" not in proc.stderr
