#!/usr/bin/env python3
"""Build and install a portable llama-cpp-python: one wheel that runs on any x86-64 CPU.

pip's default build of llama-cpp-python compiles ggml for the build machine's own CPU
(``-march=native``). Such a wheel, cached by pip and reused on another machine, dies with
SIGILL there (an Intel VM advertising AMX it cannot run, an older CPU without AVX-512, ...).
This script builds ggml's CPU backend once per instruction-set level (``GGML_BACKEND_DL`` +
``GGML_CPU_ALL_VARIANTS``) and ships every variant in the wheel; at run time
``starcoder_ls.backends.cpu_select`` probes which instruction sets this CPU and OS can really
execute and loads the best variant that uses only those.

The wheel is kept in ``$XDG_CACHE_HOME/starcoder-ls/wheels/<key>/``, where the key hashes the
version, the CMake flags and this script, and it carries a build marker
(``llama_cpp/starcoder_ls_build.json``). An installed llama-cpp-python without that exact
marker (pip's own build from an older setup, say) is replaced, never silently kept.

Usage: build_llama.py --python .venv/bin/python [--version 0.3.36] [--check]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

VERSION = "0.3.36"
# Variants CMake builds with GGML_CPU_ALL_VARIANTS on x86-64 (ggml/src/CMakeLists.txt). They are
# MODULE libraries that llama-cpp-python's own CMakeLists does not install, so the patch below
# installs them beside libggml.so.
X86_VARIANTS = [
    "x64",
    "sse42",
    "sandybridge",
    "ivybridge",
    "piledriver",
    "haswell",
    "skylakex",
    "cannonlake",
    "cascadelake",
    "icelake",
    "cooperlake",
    "zen4",
    "alderlake",
    "sapphirerapids",
]
CMAKE_ARGS = [
    "-DGGML_NATIVE=OFF",
    "-DGGML_BACKEND_DL=ON",
    "-DGGML_CPU_ALL_VARIANTS=ON",
    "-DLLAVA_BUILD=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_TOOLS=OFF",
    "-DLLAMA_BUILD_SERVER=OFF",
]
MARKER = "starcoder_ls_build.json"
BUILD_REVISION = 1
"""Bump when the build changes in a way the version, flags and variants do not show (the
patch, the toolchain setup): every cached wheel is then rebuilt."""


def build_key(version: str) -> str:
    h = hashlib.sha256()
    for part in (version, *CMAKE_ARGS, *X86_VARIANTS, str(BUILD_REVISION)):
        h.update(part.encode() + b"\0")
    return h.hexdigest()[:16]


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "starcoder-ls" / "wheels"


def installed_marker(python: str) -> dict | None:
    """The build marker of the llama-cpp-python installed for `python`, without importing it.

    Importing llama_cpp would load its native libraries; a foreign build may not even load.
    """
    code = (
        "import importlib.util, json, pathlib, sys\n"
        "spec = importlib.util.find_spec('llama_cpp')\n"
        "if spec is None or not spec.submodule_search_locations: sys.exit(3)\n"
        "p = pathlib.Path(list(spec.submodule_search_locations)[0]) / " + repr(MARKER) + "\n"
        "print(p.read_text() if p.exists() else '')\n"
    )
    out = subprocess.run([python, "-c", code], capture_output=True, text=True)
    if out.returncode != 0 or not out.stdout.strip():
        return None
    try:
        return json.loads(out.stdout)
    except json.JSONDecodeError:
        return None


def patch_source(src: Path, marker: dict) -> None:
    cmake = src / "CMakeLists.txt"
    text = cmake.read_text()
    anchor = "    llama_cpp_python_install_target(ggml-cpu)\n"
    if anchor not in text:
        raise SystemExit(f"build_llama: {cmake} changed shape; cannot add the CPU variants")
    extra = "".join(f"    llama_cpp_python_install_target(ggml-cpu-{v})\n" for v in X86_VARIANTS)
    cmake.write_text(text.replace(anchor, anchor + extra))
    (src / "llama_cpp" / MARKER).write_text(json.dumps(marker, indent=2) + "\n")


def build_wheel(python: str, version: str, key: str, out: Path) -> Path:
    marker = {
        "version": version,
        "key": key,
        "cmake_args": CMAKE_ARGS,
        "variants": X86_VARIANTS,
    }
    with tempfile.TemporaryDirectory(prefix="starcoder-ls-llama-") as tmp:
        tmpdir = Path(tmp)
        print(f"build_llama: fetching the llama-cpp-python {version} source", file=sys.stderr)
        subprocess.run(
            [
                python,
                *("-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:"),
                *(f"llama-cpp-python=={version}", "-d", str(tmpdir)),
            ],
            check=True,
        )
        sdist = next(tmpdir.glob("llama_cpp_python-*.tar.gz"))
        with tarfile.open(sdist) as tar:
            tar.extractall(tmpdir, filter="data")
        src = next(p for p in tmpdir.iterdir() if p.is_dir())
        patch_source(src, marker)
        env = dict(os.environ)
        env["CMAKE_ARGS"] = " ".join(CMAKE_ARGS)
        env.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 2))
        start = time.monotonic()
        print(
            f"build_llama: compiling llama.cpp with {len(X86_VARIANTS)} CPU variants "
            "(once; about 15 minutes on 2 cores)",
            file=sys.stderr,
        )
        wheels = tmpdir / "wheels"
        log = tmpdir / "build.log"
        with log.open("w") as fh:
            proc = subprocess.run(
                [
                    python,
                    *("-m", "pip", "wheel", "--no-deps", "--no-cache-dir", "-w", str(wheels)),
                    str(src),
                ],
                env=env,
                stdout=fh,
                stderr=subprocess.STDOUT,
            )
        if proc.returncode != 0:
            tail = log.read_text(errors="replace").splitlines()[-40:]
            print("\n".join(tail), file=sys.stderr)
            raise SystemExit(f"build_llama: the build failed (exit {proc.returncode})")
        wheel = next(wheels.glob("llama_cpp_python-*.whl"))
        out.mkdir(parents=True, exist_ok=True)
        dest = out / wheel.name
        shutil.copy2(wheel, dest.with_suffix(".part"))
        os.replace(dest.with_suffix(".part"), dest)
        print(f"build_llama: built in {time.monotonic() - start:.0f} s: {dest}", file=sys.stderr)
        return dest


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--python", default=sys.executable, help="the interpreter to install into")
    ap.add_argument("--version", default=VERSION)
    ap.add_argument(
        "--check", action="store_true", help="only say whether the installed build is ours"
    )
    args = ap.parse_args()
    key = build_key(args.version)
    marker = installed_marker(args.python)
    if marker is not None and marker.get("key") == key:
        return 0
    if args.check:
        found = "none" if marker is None else f"key {marker.get('key')}"
        print(f"build_llama: installed llama-cpp-python is not the portable build {key} ({found})")
        return 1
    where = cache_dir() / key
    wheels = sorted(where.glob("llama_cpp_python-*.whl")) if where.is_dir() else []
    wheel = wheels[-1] if wheels else build_wheel(args.python, args.version, key, where)
    if marker is None:
        print("build_llama: replacing llama-cpp-python with the portable build", file=sys.stderr)
    subprocess.run(
        [
            args.python,
            *("-m", "pip", "install", "--quiet", "--no-deps", "--force-reinstall", str(wheel)),
        ],
        check=True,
    )
    if (installed_marker(args.python) or {}).get("key") != key:
        raise SystemExit("build_llama: the installed llama-cpp-python still lacks the build marker")
    return 0


if __name__ == "__main__":
    sys.exit(main())
