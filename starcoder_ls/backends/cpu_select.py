"""Pick the llama.cpp CPU kernels this machine can really execute, before llama.cpp loads.

``scripts/build_llama.py`` builds ggml's CPU backend once per x86-64 instruction-set level
(``GGML_CPU_ALL_VARIANTS``: ``libggml-cpu-haswell.so``, ``-skylakex``, ``-sapphirerapids``, ...).
ggml's own choice among them (``ggml_backend_load_all``) scores each variant by the CPUID bits
the processor advertises and, as its source says, does not check that the OS or hypervisor lets
them run: on VMs that advertise AMX or AVX-512 they cannot execute it picks a variant that dies
with SIGILL at the first matrix multiply.

So the features are *executed* instead: a throwaway process runs one instruction of each
feature (in a forked child per feature, so a fault costs only that child) and reports which ran.
The best variant that needs only those is loaded with ``ggml_backend_load`` before
``llama_backend_init``, which then finds a backend registered and loads nothing else.

``STARCODER_LS_CPU_FEATURES_OFF=avx512,amx`` masks features (to compare variants, or to work
around a CPU this check still gets wrong); ``STARCODER_LS_CPU_VARIANT=haswell`` forces one.
"""

from __future__ import annotations

import ctypes
import importlib.util
import json
import logging
import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# One short function per feature (x86-64 machine code, assembled from Intel syntax with GNU as):
# the instructions ggml's kernels of that level use, then ret. AVX-512 stands for ggml's group
# (F, CD, VL, DQ, BW): it touches zmm16 (EVEX-only registers), a mask register, a conflict
# detection and a 256-bit EVEX op.
_PROBES: dict[str, str] = {
    "sse42": "f20f38f1c0 c3",  # crc32 eax, eax
    "avx": "c5fc57c0 c5f877 c3",  # vxorps ymm0, ymm0, ymm0; vzeroupper
    "f16c": "c4e27913c0 c3",  # vcvtph2ps xmm0, xmm0
    "fma": "c4e27db8c0 c5f877 c3",  # vfmadd231ps ymm0, ymm0, ymm0
    "avx2": "c5fdfec0 c5f877 c3",  # vpaddd ymm0, ymm0, ymm0
    "bmi2": "c4e27bf5c0 c3",  # pdep eax, eax, eax
    # vpaddb/vpaddq zmm16; kmovq k1, k1; vpconflictd zmm16; vpaddd ymm16
    "avx512": "62a17d40fcc0 62a1fd40d4c0 c4e1f890c9 62a27d48c4c0 62a17d20fec0 c5f877 c3",
    "avx512_vbmi": "62a27d408dc0 c5f877 c3",  # vpermb zmm16, zmm16, zmm16
    "avx512_vnni": "62a27d4050c0 c5f877 c3",  # vpdpbusd zmm16, zmm16, zmm16
    "avx512_bf16": "62a27e4052c0 c5f877 c3",  # vdpbf16ps zmm16, zmm16, zmm16
    "avx_vnni": "c4e27d50c0 c5f877 c3",  # {vex} vpdpbusd ymm0, ymm0, ymm0
    # ldtilecfg [rdi]; tilezero tmm0; tilerelease (after asking Linux for the tile state)
    "amx": "c4e2784907 c4e27b49c0 c4e27849c0 c3",
}
FEATURES = tuple(_PROBES)

# ggml/src/CMakeLists.txt (GGML_CPU_ALL_VARIANTS, x86) and the score of
# ggml-cpu/arch/x86/cpu-feats.cpp: each feature a variant needs adds its bit.
_SCORE_BITS = {
    "fma": 1,
    "f16c": 2,
    "sse42": 4,
    "bmi2": 8,
    "avx": 16,
    "avx2": 32,
    "avx_vnni": 64,
    "avx512": 128,
    "avx512_vbmi": 256,
    "avx512_bf16": 512,
    "avx512_vnni": 1024,
    "amx": 2048,
}
_AVX2 = ("sse42", "avx", "f16c", "fma", "avx2", "bmi2")
VARIANTS: dict[str, tuple[str, ...]] = {
    "x64": (),
    "sse42": ("sse42",),
    "sandybridge": ("sse42", "avx"),
    "ivybridge": ("sse42", "avx", "f16c"),
    "piledriver": ("sse42", "avx", "f16c", "fma"),
    "haswell": _AVX2,
    "skylakex": (*_AVX2, "avx512"),
    "cannonlake": (*_AVX2, "avx512", "avx512_vbmi"),
    "cascadelake": (*_AVX2, "avx512", "avx512_vnni"),
    "icelake": (*_AVX2, "avx512", "avx512_vbmi", "avx512_vnni"),
    "cooperlake": (*_AVX2, "avx512", "avx512_vnni", "avx512_bf16"),
    "zen4": (*_AVX2, "avx512", "avx512_vbmi", "avx512_vnni", "avx512_bf16"),
    "alderlake": (*_AVX2, "avx_vnni"),
    "sapphirerapids": (
        *_AVX2,
        "avx512",
        "avx512_vbmi",
        "avx512_vnni",
        "avx512_bf16",
        "amx",
    ),
}

_ARCH_REQ_XCOMP_PERM = 0x1023
_XFEATURE_XTILEDATA = 18
_SYS_ARCH_PRCTL = 158


@dataclass(frozen=True)
class CpuChoice:
    variant: str | None
    """The ggml CPU variant loaded; None when the installed llama.cpp has no variants."""
    features: tuple[str, ...]
    """Features that executed here (after STARCODER_LS_CPU_FEATURES_OFF)."""
    library: str | None = None
    note: str = ""

    def describe(self) -> str:
        if self.variant is None:
            return self.note or "llama.cpp's built-in CPU backend"
        return f"ggml CPU variant {self.variant} ({', '.join(self.features) or 'baseline'})"


def _run_probe(name: str) -> None:
    """Execute feature ``name``'s instructions in this process (a fault kills it)."""
    import mmap

    code = bytes.fromhex(_PROBES[name].replace(" ", ""))
    buf = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    buf.write(code)
    address = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    if name == "amx":
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.syscall(_SYS_ARCH_PRCTL, _ARCH_REQ_XCOMP_PERM, _XFEATURE_XTILEDATA) != 0:
            os._exit(3)  # the kernel has no tile state for us
        config = (ctypes.c_uint8 * 64)()
        config[0] = 1  # palette 1
        config[16] = 4  # tile 0: 4 bytes per row
        config[48] = 1  # tile 0: 1 row
        ctypes.CFUNCTYPE(None, ctypes.c_void_p)(address)(ctypes.addressof(config))
    else:
        ctypes.CFUNCTYPE(None)(address)()


def probe_here() -> dict[str, str]:
    """Run each probe in a forked child of this (single-threaded, throwaway) process.

    Returns feature -> "ok" or how the child ended ("SIGILL", "exit 3", ...).
    """
    import signal

    results: dict[str, str] = {}
    for name in FEATURES:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child either returns from the probe or dies
            import faulthandler

            faulthandler.disable()  # the expected fault is the answer, not a crash to report
            try:
                _run_probe(name)
            except BaseException:
                os._exit(2)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status):
            results[name] = signal.Signals(os.WTERMSIG(status)).name
        else:
            code = os.WEXITSTATUS(status)
            results[name] = "ok" if code == 0 else f"exit {code}"
    return results


_probed: dict[str, str] | None = None


def probe() -> dict[str, str]:
    """Which features execute on this CPU and OS (probed once per process, in a subprocess:
    forking the calling process, which may run threads, is not safe)."""
    global _probed
    if _probed is None:
        if platform.machine().lower() not in ("x86_64", "amd64"):
            _probed = {}
        else:
            out = subprocess.run(
                [sys.executable, "-m", "starcoder_ls.backends.cpu_select", "--probe"],
                capture_output=True,
                text=True,
                timeout=60,
            )
            try:
                _probed = dict(json.loads(out.stdout))
            except (json.JSONDecodeError, TypeError, ValueError):
                log.warning("CPU feature probe failed (%s); using the baseline", out.stderr[-300:])
                _probed = {}
    return dict(_probed)


def usable_features(results: dict[str, str] | None = None) -> tuple[str, ...]:
    results = probe() if results is None else results
    off = {
        f.strip().lower() for f in os.environ.get("STARCODER_LS_CPU_FEATURES_OFF", "").split(",")
    }
    return tuple(f for f in FEATURES if results.get(f) == "ok" and f not in off)


def best_variant(features: tuple[str, ...], available: set[str]) -> str | None:
    """The highest-scoring variant among ``available`` whose features all executed."""
    have = set(features)
    best: tuple[int, str] | None = None
    for name, needs in VARIANTS.items():
        if name not in available or not have.issuperset(needs):
            continue
        score = 1 + sum(_SCORE_BITS[f] for f in needs)
        if best is None or score > best[0]:
            best = (score, name)
    return best[1] if best else None


def llama_lib_dir() -> Path | None:
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "lib"


def build_marker() -> dict[str, object] | None:
    """What ``scripts/build_llama.py`` recorded in the installed llama-cpp-python, if it
    built it."""
    lib = llama_lib_dir()
    if lib is None:
        return None
    try:
        data = json.loads((lib.parent / "starcoder_ls_build.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def available_variants(lib: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in lib.glob("libggml-cpu-*.so"):
        name = path.name[len("libggml-cpu-") : -len(".so")]
        if name in VARIANTS:
            found[name] = path
    return found


_choice: CpuChoice | None = None


def select_cpu_backend() -> CpuChoice:
    """Load the best runnable ggml CPU variant into this process (once), before llama_cpp
    initialises its backends. Call it before the first ``llama_cpp`` import."""
    global _choice
    if _choice is not None:
        return _choice
    lib = llama_lib_dir()
    variants = available_variants(lib) if lib is not None else {}
    if not variants:
        note = "llama.cpp's built-in CPU backend"
        if build_marker() is None:
            note += (
                " (llama-cpp-python was not built by scripts/setup.sh; a build with native CPU "
                "flags from another machine can crash here with SIGILL)"
            )
            log.warning("%s", note)
        _choice = CpuChoice(None, usable_features() if lib else (), None, note)
        return _choice
    assert lib is not None
    features = usable_features()
    forced = os.environ.get("STARCODER_LS_CPU_VARIANT", "").strip()
    if forced:
        if forced not in variants:
            raise RuntimeError(
                f"STARCODER_LS_CPU_VARIANT={forced}: no such ggml CPU variant in {lib} "
                f"(have {', '.join(sorted(variants))})"
            )
        name: str | None = forced
    else:
        name = best_variant(features, set(variants))
    if name is None:
        raise RuntimeError(f"no ggml CPU variant in {lib} runs on this CPU")
    # Through libllama's handle: symbols resolve in the very libggml it links (the wheel holds
    # libggml.so and libggml.so.0 as separate files, and loading the other one would register
    # the backend in a copy llama.cpp never looks at).
    ggml = ctypes.CDLL(str(lib / "libllama.so"), mode=ctypes.RTLD_GLOBAL)
    ggml.ggml_backend_reg_count.restype = ctypes.c_size_t
    if ggml.ggml_backend_reg_count() == 0:
        ggml.ggml_backend_load.argtypes = [ctypes.c_char_p]
        ggml.ggml_backend_load.restype = ctypes.c_void_p
        if not ggml.ggml_backend_load(str(variants[name]).encode()):
            raise RuntimeError(f"ggml could not load {variants[name]}")
    _choice = CpuChoice(name, features, str(variants[name]))
    log.info("llama.cpp runs on %s", _choice.describe())
    return _choice


def ggml_own_choice() -> str | None:
    """The variant ggml itself would load here (``ggml_backend_load_all``: CPUID scores only),
    found in a throwaway process; for reports that compare it with ours."""
    lib = llama_lib_dir()
    if lib is None or not available_variants(lib):
        return None
    code = (
        "import ctypes, sys\n"
        f"lib = ctypes.CDLL({str(lib / 'libllama.so')!r}, mode=ctypes.RTLD_GLOBAL)\n"
        "lib.ggml_backend_load_all_from_path.argtypes = [ctypes.c_char_p]\n"
        f"lib.ggml_backend_load_all_from_path({str(lib).encode()!r})\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    import re

    found = re.search(r"libggml-cpu-([a-z0-9_]+)\.so", out.stderr + out.stdout)
    return found.group(1) if found else None


def import_llama_cpp() -> Any:
    """``import llama_cpp`` after choosing its CPU kernels; RuntimeError when none can run."""
    select_cpu_backend()
    import llama_cpp

    return llama_cpp


def _main() -> int:
    if "--probe" in sys.argv:
        print(json.dumps(probe_here()))
        return 0
    if len(sys.argv) > 2 and sys.argv[1] == "run":
        # Run a llama-cpp-python program (its server, say) on the kernels chosen here:
        # ``python -m starcoder_ls.backends.cpu_select run llama_cpp.server --model m.gguf``.
        import runpy

        select_cpu_backend()
        sys.argv = [sys.argv[2], *sys.argv[3:]]
        runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
        return 0
    results = probe()
    choice = select_cpu_backend()
    report = {"probe": results, "choice": choice.__dict__, "ggml_own_choice": ggml_own_choice()}
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
