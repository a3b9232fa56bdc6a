"""Choosing llama.cpp's CPU kernels by what this machine really executes.

The probes run real instructions in forked children, so these tests check real behaviour: on a
CPU without AVX-512 (the AMD EPYC machines here) its probe really dies with SIGILL, and the
chosen variant must not need it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from starcoder_ls.backends import cpu_select

ROOT = Path(__file__).resolve().parents[2]
# /proc/cpuinfo's name of each probed feature (what the CPU and kernel advertise).
CPUINFO_FLAG = {
    "sse42": "sse4_2",
    "avx": "avx",
    "f16c": "f16c",
    "fma": "fma",
    "avx2": "avx2",
    "bmi2": "bmi2",
    "avx512": "avx512bw",
    "avx512_vbmi": "avx512vbmi",
    "avx512_vnni": "avx512_vnni",
    "avx512_bf16": "avx512_bf16",
    "avx_vnni": "avx_vnni",
    "amx": "amx_tile",
}

x86_only = pytest.mark.skipif(
    os.uname().machine not in ("x86_64", "amd64"), reason="x86-64 instruction probes"
)


def cpu_flags() -> set[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


@x86_only
def test_probes_never_claim_what_the_cpu_does_not_advertise() -> None:
    results = cpu_select.probe_here()
    flags = cpu_flags()
    assert set(results) == set(cpu_select.FEATURES)
    for feature, outcome in results.items():
        if CPUINFO_FLAG[feature] not in flags:
            # Not advertised: running it must have failed (SIGILL, or the kernel refused).
            assert outcome != "ok", feature
    # Every x86-64 CPU these machines have runs SSE4.2 and AVX2.
    assert results["sse42"] == "ok" and results["avx2"] == "ok"


@x86_only
def test_a_faulting_probe_is_reported_by_its_signal() -> None:
    results = cpu_select.probe_here()
    missing = [f for f in cpu_select.FEATURES if f != "amx" and results[f] != "ok"]
    if not missing:
        pytest.skip("this CPU runs every probed feature")
    assert results[missing[0]] == "SIGILL"


@pytest.mark.parametrize(
    ("features", "variant"),
    [
        ((), "x64"),
        (("sse42", "avx"), "sandybridge"),
        (("sse42", "avx", "f16c", "fma", "avx2", "bmi2"), "haswell"),
        # An Intel VM advertising AMX that cannot run it: its AMX probe fails.
        (tuple(f for f in cpu_select.FEATURES if f != "amx"), "zen4"),
        (cpu_select.FEATURES, "sapphirerapids"),
        (("sse42", "avx", "f16c", "fma", "avx2", "bmi2", "avx_vnni"), "alderlake"),
    ],
)
def test_best_variant_uses_only_executed_features(features: tuple[str, ...], variant: str) -> None:
    assert cpu_select.best_variant(features, set(cpu_select.VARIANTS)) == variant


def test_masked_features_are_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STARCODER_LS_CPU_FEATURES_OFF", "avx2, FMA")
    results = dict.fromkeys(cpu_select.FEATURES, "ok")
    usable = cpu_select.usable_features(results)
    assert "avx2" not in usable and "fma" not in usable and "avx" in usable


def _select(**env: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-m", "starcoder_ls.backends.cpu_select"],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout))


@x86_only
def test_the_installed_build_carries_every_variant() -> None:
    pytest.importorskip("llama_cpp")
    marker = cpu_select.build_marker()
    assert marker is not None, "llama-cpp-python was not built by scripts/build_llama.py"
    lib = cpu_select.llama_lib_dir()
    assert lib is not None
    assert set(cpu_select.available_variants(lib)) == set(cpu_select.VARIANTS)
    # No single CPU backend built for some machine's own instruction set.
    assert not (lib / "libggml-cpu.so").exists()
    check = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build_llama.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout


@x86_only
def test_selection_and_a_completion_on_a_lower_variant() -> None:
    pytest.importorskip("llama_cpp")
    chosen = _select()
    choice = chosen["choice"]
    assert isinstance(choice, dict)
    needs = set(cpu_select.VARIANTS[str(choice["variant"])])
    usable = set(cpu_select.usable_features(chosen["probe"]))  # type: ignore[arg-type]
    assert needs <= usable
    # Where the CPU runs everything it advertises, ggml's own CPUID-only choice agrees with
    # ours; where it does not (AMX on some VMs), ggml's choice needs a feature that failed.
    ggml_pick = str(chosen["ggml_own_choice"])
    if set(cpu_select.VARIANTS[ggml_pick]) <= usable:
        assert ggml_pick == choice["variant"]
    else:
        assert ggml_pick != choice["variant"]

    masked = _select(STARCODER_LS_CPU_FEATURES_OFF="avx2,fma")
    assert masked["choice"]["variant"] == "ivybridge"  # type: ignore[index]
    # A real completion on that variant, through the CLI and its worker process.
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "starcoder_ls",
            "complete",
            f"{ROOT}/examples/demo.py:8:5",
            "--json",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "STARCODER_LS_CPU_FEATURES_OFF": "avx2,fma"},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["prompt_tokens"] > 0


def test_a_foreign_llama_build_is_detected(tmp_path: Path) -> None:
    """A llama-cpp-python without our build marker (pip's own native build, cached from an
    older setup) is reported, not silently kept."""
    fake = tmp_path / "site" / "llama_cpp"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    check = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build_llama.py"), "--check"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(tmp_path / "site")},
    )
    assert check.returncode == 1
    assert "not the portable build" in check.stdout


@x86_only
def test_setup_replaces_a_foreign_llama_build(tmp_path: Path) -> None:
    """An environment holding some other llama-cpp-python (here a stand-in without the build
    marker, as pip's own native build has none) gets the portable build from the cache."""
    pytest.importorskip("llama_cpp")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
    )  # fmt: skip
    (site / "llama_cpp").mkdir(parents=True)
    (site / "llama_cpp" / "__init__.py").write_text("NATIVE = True\n")
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build_llama.py"), "--python", str(python)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "replacing llama-cpp-python with the portable build" in done.stderr
    marker = json.loads((site / "llama_cpp" / "starcoder_ls_build.json").read_text())
    assert marker["variants"] == list(cpu_select.VARIANTS)
    assert not (site / "llama_cpp" / "__init__.py").read_text().startswith("NATIVE")


@x86_only
def test_a_forced_variant_the_cpu_lacks_is_refused_clearly() -> None:
    pytest.importorskip("llama_cpp")
    if cpu_select.probe_here()["avx512"] == "ok":
        pytest.skip("this CPU runs AVX-512")
    done = subprocess.run(
        [sys.executable, "-m", "starcoder_ls", "complete", f"{ROOT}/examples/demo.py:8:5"],
        capture_output=True,
        text=True,
        env={**os.environ, "STARCODER_LS_CPU_VARIANT": "skylakex"},
        timeout=300,
    )
    assert done.returncode == 1
    assert "could not load" in done.stderr and "libggml-cpu-skylakex.so" in done.stderr
    assert "Traceback" not in done.stderr
