"""The ``starcoder-ls`` command through its real entry point (a subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def scl(
    *args: str, timeout: int = 300, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "starcoder_ls", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd or ROOT,
    )


def test_help_is_fast_and_lists_commands() -> None:
    t = time.perf_counter()
    proc = scl("--help")
    assert proc.returncode == 0
    assert time.perf_counter() - t < 5
    assert "complete" in proc.stdout and "recipe" in proc.stdout
    proc = scl("recipe", "--help")
    for stage in (
        "corpus",
        "tokenizer",
        "shards",
        "train",
        "adapt",
        "export",
        "quantize",
        "evaluate",
        "bundle",
    ):
        assert stage in proc.stdout


def test_presets_json() -> None:
    proc = scl("recipe", "presets", "--json")
    rows = {r["name"]: r for r in json.loads(proc.stdout)}
    assert rows["tiny"]["n_embd"] == 256 and rows["15b"]["parameters"] > 15e9


def test_user_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    proc = scl("recipe", "train", str(tmp_path / "nowhere"), "-o", str(tmp_path / "run"))
    assert proc.returncode == 1
    assert proc.stderr.startswith("starcoder-ls: error: no token shards in")
    assert "Traceback" not in proc.stderr
    proc = scl("recipe", "evaluate", str(tmp_path / "nothing.gguf"), "--corpus", str(tmp_path))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr


def test_recipe_pipeline_end_to_end(tmp_path: Path) -> None:
    """corpus -> tokenizer -> shards -> train -> export -> quantize -> evaluate, as a user runs it."""
    import sysconfig

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    sources = [f"{name}={stdlib / name}" for name in ("json", "html", "http")]
    steps = [
        (
            "recipe",
            "corpus",
            *sources,
            "-o",
            str(tmp_path / "corpus"),
            "--language",
            "python",
            "--val-fraction",
            "0.3",
            "--no-progress",
        ),
        (
            "recipe",
            "tokenizer",
            str(tmp_path / "corpus"),
            "-o",
            str(tmp_path / "tok"),
            "--vocab-size",
            "600",
            "--no-progress",
        ),
        (
            "recipe",
            "shards",
            str(tmp_path / "corpus"),
            "--tokenizer",
            str(tmp_path / "tok"),
            "-o",
            str(tmp_path / "shards"),
            "--seq-len",
            "128",
            "--no-progress",
        ),
        (
            "recipe",
            "train",
            str(tmp_path / "shards"),
            "-o",
            str(tmp_path / "run"),
            "--preset",
            "micro",
            "--micro-batch",
            "2",
            "--max-steps",
            "6",
            "--warmup-steps",
            "2",
            "--eval-every",
            "6",
            "--eval-batches",
            "1",
            "--fim-eval-samples",
            "2",
            "--no-progress",
        ),
        (
            "recipe",
            "export",
            str(tmp_path / "run"),
            "--hf-out",
            str(tmp_path / "hf"),
            "--gguf-out",
            str(tmp_path / "m.gguf"),
        ),
        ("recipe", "quantize", str(tmp_path / "m.gguf"), "--type", "Q8_0"),
        (
            "recipe",
            "evaluate",
            str(tmp_path / "hf"),
            str(tmp_path / "m-Q8_0.gguf"),
            "--corpus",
            str(tmp_path / "corpus"),
            "--samples",
            "5",
            "--max-tokens",
            "2000",
            "--json",
        ),
    ]
    for args in steps:
        proc = scl(*args)
        assert proc.returncode == 0, (args[:2], proc.stderr[-2000:])
    hf, q8 = json.loads(proc.stdout)
    assert hf["fim_line"]["samples"] == q8["fim_line"]["samples"] == 5
    assert set(hf["baselines"]) == {"empty_line", "repeat_previous_line"}
    # The same weights through transformers and llama.cpp (8-bit) give nearly the same perplexity.
    assert hf["perplexity"]["tokens"] == q8["perplexity"]["tokens"]
    assert q8["perplexity"]["perplexity"] == pytest.approx(hf["perplexity"]["perplexity"], rel=0.02)
    assert (tmp_path / "run" / "loss.png").is_file()


def test_models_list_names_the_bundled_model_first_with_its_files() -> None:
    proc = scl("models", "list", "--json")
    assert proc.returncode == 0, proc.stderr
    models = json.loads(proc.stdout)
    bundled = models[0]
    assert (bundled["id"], bundled["family"]) == ("starcoder-ls-tiny", "starcoder-ls")
    assert (
        Path(bundled["gguf_path"]).is_file() and Path(bundled["hf_path"], "config.json").is_file()
    )
    families = {m["family"] for m in models}
    assert {"starcoder", "starcoder2", "codellama", "deepseek-coder"} <= families
    table = scl("models", "list")
    assert table.returncode == 0
    header, first = table.stdout.splitlines()[:2]
    assert header.split() == ["model", "family", "context", "present"]
    assert first.split()[:4] == ["starcoder-ls-tiny", "starcoder-ls", "512", "yes"]


def test_a_closed_pipe_ends_output_quietly() -> None:
    """``starcoder-ls models list | head -1``: no traceback when the reader stops early."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "starcoder_ls", "models", "list", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, bufsize=0,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.read(1)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.wait(timeout=60)
    assert "Traceback" not in err


def test_prompt_never_reads_secret_or_ignored_files_through_symlinks(tmp_path: Path) -> None:
    """`settings_local.py -> .env` and `ign.py -> ignored/cfg.py`: the links' names look like
    code, the files they point to are a secret and an ignored file; neither reaches the prompt,
    and no prompt is built inside a secret file or a link to one."""
    ws = tmp_path / "ws"
    (ws / "ignored").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(ws)], check=True)
    (ws / ".env").write_text("OPENAI_API_KEY=sk-proj-Zq9xT4kLmN2pQ8rS5vW1yB6cD3fG7hJ0aB\n")
    (ws / "settings_local.py").symlink_to(".env")
    (ws / ".gitignore").write_text("ignored/\n")
    (ws / "ignored" / "cfg.py").write_text(
        'MARKER = "only-in-an-ignored-file"\n\ndef cfg():\n    return 1\n'
    )
    (ws / "ign.py").symlink_to("ignored/cfg.py")
    (ws / "app.py").write_text(
        "import settings_local\nimport ign\nfrom settings_local import OPENAI_API_KEY\n"
        "from ign import cfg\n\n\ndef main():\n    key = settings_local.OPENAI_API_KEY\n"
        "    return key, ign.cfg()\n\n\ndef run():\n    \n"
    )
    proc = scl(
        "prompt", f"{ws / 'app.py'}:13:5", "--workspace", str(ws), "--json", "--backend", "test"
    )
    assert proc.returncode == 0, proc.stderr
    prompt = json.loads(proc.stdout)["prompt"]
    assert "def run():" in prompt
    assert "Zq9xT4kLmN2pQ8rS5vW1yB6cD3fG7hJ0aB" not in prompt
    assert "only-in-an-ignored-file" not in prompt
    for name in (".env", "settings_local.py"):
        refused = scl("prompt", f"{ws / name}:1:1", "--workspace", str(ws), "--backend", "test")
        assert refused.returncode != 0
        assert "looks like a credentials file" in refused.stderr
        assert "Zq9x" not in refused.stdout + refused.stderr


def test_prompt_outlines_a_cpp_class_declared_in_a_dot_h_with_an_export_macro(
    tmp_path: Path,
) -> None:
    """leveldb's shape: C++ in a ``.h`` file and ``class LEVELDB_EXPORT Env``. The prompt's
    cross-file context shows the class with its methods, not a broken C function."""
    ws = tmp_path / "kv"
    (ws / "include").mkdir(parents=True)
    (ws / "include" / "env.h").write_text(
        "namespace kv {\n\nclass KV_EXPORT Env {\n public:\n  virtual ~Env();\n"
        "  // Deletes the named file.\n  virtual int RemoveFile(const char* name) = 0;\n};\n\n}\n"
    )
    (ws / "main.cc").write_text(
        '#include "include/env.h"\n\nint cleanup(kv::Env* env) {\n  \n  return 0;\n}\n'
    )
    proc = scl(
        "prompt", f"{ws / 'main.cc'}:4:3", "--workspace", str(ws), "--json", "--backend", "test"
    )
    assert proc.returncode == 0, proc.stderr
    prompt = json.loads(proc.stdout)["prompt"]
    assert "class Env {" in prompt
    assert "virtual int RemoveFile(const char* name) = 0" in prompt


def test_prompt_of_a_go_test_shows_the_file_it_tests(tmp_path: Path) -> None:
    """A package of ten files: ``zeta_test.go``'s prompt holds ``zeta.go``'s function, though
    the file sorts last and nothing near the cursor names it."""
    ws = tmp_path / "svc"
    (ws / "pkg").mkdir(parents=True)
    (ws / "go.mod").write_text("module example.com/svc\n")
    for name in "abcdefgh":
        funcs = "".join(
            f"// {name.title()}{i} does step {i}.\nfunc {name.title()}{i}(v int) int "
            "{ return v }\n\n"
            for i in range(6)
        )
        (ws / "pkg" / f"{name}.go").write_text(f"package pkg\n\n{funcs}")
    (ws / "pkg" / "zeta.go").write_text(
        "package pkg\n\n// Normalize trims and lower-cases a key.\n"
        "func Normalize(key string) string { return key }\n"
    )
    (ws / "pkg" / "zeta_test.go").write_text(
        'package pkg\n\nimport "testing"\n\nfunc TestKeys(t *testing.T) {\n\t\n}\n'
    )
    proc = scl(
        "prompt",
        f"{ws / 'pkg' / 'zeta_test.go'}:6:2",
        "--workspace",
        str(ws),
        "--json",
        "--backend",
        "test",
        "--cross-file-tokens",
        "120",
    )
    assert proc.returncode == 0, proc.stderr
    assert "func Normalize(key string) string" in json.loads(proc.stdout)["prompt"]
