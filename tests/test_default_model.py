"""The model users get with no settings: installed from PyPI by setup, verified, prompted left to
right, and writing a sensible body for the demo's empty function (what ``make demo`` shows)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from starcoder_ls.models import DEFAULT_MODEL_ENV, default_gguf
from starcoder_ls.models.packaged import DEFAULT, PackagedModelError, path_if_ready, prepare
from starcoder_ls.models.registry import family_for, guess_family_from_vocab, read_vocab

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gguf() -> Path:
    path = path_if_ready(DEFAULT)
    assert path is not None, f"{DEFAULT.name} is not installed: scripts/setup.sh installs it"
    return path


def test_setup_installed_and_verified_the_default_model(gguf: Path) -> None:
    assert prepare(DEFAULT) == gguf  # checks the SHA-256 the package publishes
    assert gguf.stat().st_size == DEFAULT.size


def test_an_empty_model_setting_means_the_default(
    gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(DEFAULT_MODEL_ENV, raising=False)
    assert default_gguf() == (str(gguf), "")
    monkeypatch.setenv(DEFAULT_MODEL_ENV, "tiny")
    assert default_gguf()[0].endswith("starcoder-ls-tiny-Q8_0.gguf")


def test_no_fim_tokens_means_left_to_right(gguf: Path, tmp_path: Path) -> None:
    assert guess_family_from_vocab(read_vocab(gguf)) is None
    assert family_for(str(gguf)) == "left-to-right"
    renamed = tmp_path / "my-model.gguf"  # a name the registry does not know
    shutil.copyfile(gguf, renamed)
    assert family_for(str(renamed)) == "left-to-right"


def test_a_corrupt_join_is_never_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    from starcoder_ls.models import packaged

    monkeypatch.setattr(packaged, "model_dirs", lambda: [tmp_path])
    wrong = replace(DEFAULT, sha256="0" * 64)
    with pytest.raises(PackagedModelError, match="SHA-256"):
        prepare(wrong)
    assert not list(tmp_path.iterdir())  # no partial or unverified file left behind


def test_demo_completes_the_empty_body_sensibly(gguf: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != DEFAULT_MODEL_ENV}
    done = subprocess.run(
        [sys.executable, "-m", "starcoder_ls", "complete", "examples/demo.py:8:5", "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["model"] == str(gguf) and out["family"] == "left-to-right"
    completion = out["completion"]
    # The body of mean(values): a return over the values, inside the body, nothing after it.
    assert completion.startswith("return "), completion
    assert "values" in completion and "\n" not in completion
    assert "def " not in completion


def test_a_vocabulary_with_repository_tokens_gets_the_file_header(tmp_path: Path) -> None:
    from starcoder_ls.models.packaged import SMOLLM2_135M, installed

    if not installed(SMOLLM2_135M):
        pytest.skip("SmolLM2 is not installed (bench/model_bench.py installs it)")
    path = prepare(SMOLLM2_135M)
    renamed = tmp_path / "renamed.gguf"
    shutil.copyfile(path, renamed)
    assert family_for(str(renamed)) == "left-to-right-repo"


def test_a_missing_default_model_is_said_not_hidden(tmp_path: Path) -> None:
    """Without the default model's files the bundled test model stands in, and the user is
    told how to install the real one."""
    env = {k: v for k, v in os.environ.items() if k != DEFAULT_MODEL_ENV}
    env[DEFAULT_MODEL_ENV] = "smollm2-135m-instruct"  # a packaged model this setup may lack
    from starcoder_ls.models.packaged import SMOLLM2_135M, installed

    if installed(SMOLLM2_135M):
        pytest.skip("SmolLM2 is installed here")
    done = subprocess.run(
        [sys.executable, "-m", "starcoder_ls", "complete", "examples/demo.py:8:5", "--json"],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "is not installed" in done.stderr and "pip install --no-deps" in done.stderr
    assert json.loads(done.stdout)["model"].endswith("starcoder-ls-tiny-Q8_0.gguf")
