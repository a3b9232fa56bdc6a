"""``starcoder-ls models pull``: GGUF files from the Hugging Face Hub, and finding them again.

Downloads go through ``huggingface_hub`` into its standard cache (``HF_HOME``,
``HF_HUB_CACHE``), so a file another tool pulled is found and one we pulled is shared. A
download that stops part way resumes from where it stopped; the finished file's SHA-256 is
compared with the one the Hub announced for it (its LFS ETag) before it counts as present.
``HF_ENDPOINT`` points at a mirror, ``HF_TOKEN`` (or ``huggingface-cli login``) authenticates for
gated repositories, and ``HF_HUB_OFFLINE=1`` never touches the network.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from starcoder_ls.models.registry import HubFiles, ModelInfo, known_models, lookup


class HubError(Exception):
    """A pull or a lookup failed in a way the user can act on; the message says how."""


@dataclass(frozen=True)
class Pulled:
    model: ModelInfo
    quant: str
    path: Path


def pullable(name: str) -> tuple[ModelInfo, HubFiles]:
    info = lookup(name)
    if info is None or info.hub is None:
        names = ", ".join(m.name for m in known_models() if m.hub is not None)
        what = "an unknown model" if info is None else "not downloadable"
        raise HubError(f"{name!r} is {what}; models pull knows: {names}")
    return info, info.hub


def _quant(hub: HubFiles, name: str, quant: str | None) -> str:
    if quant is None:
        return hub.default
    found = hub.match_quant(quant)
    if found is None:
        raise HubError(f"{name} has no {quant} file; choose one of: {', '.join(hub.quants)}")
    return found


def cached_path(info: ModelInfo, quant: str | None = None) -> Path | None:
    """A pulled GGUF of ``info`` in the HF cache (no network): ``quant`` if given, else the
    default quantization first, then any other."""
    hub = info.hub
    if hub is None:
        return None
    from huggingface_hub import try_to_load_from_cache

    order = [quant] if quant else [hub.default, *(q for q in hub.quants if q != hub.default)]
    for q in order:
        found = try_to_load_from_cache(hub.repo, hub.file(q))
        if isinstance(found, str) and os.path.isfile(found):
            return Path(found)
    return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def pull(name: str, quant: str | None = None, *, token: str | None = None) -> Pulled:
    """Download ``name``'s GGUF in ``quant`` (the registry's default: Q4_K_M) into the HF
    cache, with a progress bar; resumes a partial download."""
    info, hub = pullable(name)
    q = _quant(hub, name, quant)
    filename = hub.file(q)
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    where = f"{hub.repo}/{filename}"
    try:
        path = Path(hf_hub_download(hub.repo, filename, token=token))
    except GatedRepoError as exc:
        raise HubError(
            f"{hub.repo} is gated: accept its terms on huggingface.co with your account, then "
            "set HF_TOKEN to a token of that account (or run `huggingface-cli login`)"
        ) from exc
    except RepositoryNotFoundError as exc:
        hint = "check HF_TOKEN" if token or os.environ.get("HF_TOKEN") else "set HF_TOKEN"
        raise HubError(
            f"{hub.repo} was not found or needs authentication (HTTP "
            f"{_status(exc)}); {hint} if it is private or gated"
        ) from exc
    except LocalEntryNotFoundError as exc:  # a subclass of EntryNotFoundError: first
        raise HubError(
            f"cannot reach the Hub to download {where} (offline, or HF_HUB_OFFLINE is set), "
            "and it is not in the cache"
        ) from exc
    except EntryNotFoundError as exc:
        raise HubError(f"{where} does not exist on the Hub (HTTP 404)") from exc
    except HfHubHTTPError as exc:
        raise HubError(f"downloading {where} failed: HTTP {_status(exc)}: {exc}") from exc
    except OSError as exc:  # includes the offline-mode error
        raise HubError(f"downloading {where} failed: {exc}") from exc
    # The cache names a blob by the ETag the Hub sent, which for LFS files is their SHA-256.
    expected = path.resolve().name
    if len(expected) == 64 and all(c in "0123456789abcdef" for c in expected):
        actual = _sha256(path)
        if actual != expected:
            _forget(path)
            raise HubError(
                f"{where}: the downloaded file's SHA-256 is {actual}, the Hub announced "
                f"{expected}; it was removed, pull again"
            )
    return Pulled(info, q, path)


def _status(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    return str(getattr(response, "status_code", "?"))


def _forget(path: Path) -> None:
    """Remove a bad download: the snapshot link and the blob it points to."""
    try:
        blob = path.resolve()
        path.unlink(missing_ok=True)
        if blob != path:
            blob.unlink(missing_ok=True)
    except OSError:
        pass


def resolve_gguf(model: str) -> str:
    """The GGUF file for a ``model`` setting given to the llamacpp backend.

    A path is returned as is. A registry name (``bigcode/starcoder2-3b``, ``starcoder2-3b``)
    becomes the GGUF ``models pull`` downloaded for it; when there is none, the error names
    the command that fetches it.
    """
    if os.path.exists(os.path.expanduser(model)) or _looks_like_path(model):
        return model
    info = lookup(model)
    if info is None:
        return model  # the loader explains what is wrong with it
    if info.gguf_path:
        return info.gguf_path
    from starcoder_ls.models.packaged import PACKAGED, path_if_ready

    packaged = next((p for p in PACKAGED.values() if p.hf_id == info.id), None)
    if packaged is not None and (ready := path_if_ready(packaged)) is not None:
        return str(ready)
    if info.hub is None:
        raise HubError(f"{model} has no GGUF download in the registry; give a GGUF file path")
    found = cached_path(info)
    if found is None:
        raise HubError(
            f"{info.id} is not downloaded yet; run: starcoder-ls models pull {info.name}"
            + (" (the repository is gated: set HF_TOKEN)" if info.hub.gated else "")
        )
    return str(found)


def _looks_like_path(model: str) -> bool:
    """A file path rather than a registry name (``org/name`` or ``name``)."""
    text = model.strip()
    return (
        text.lower().endswith(".gguf")
        or text.startswith(("/", "~", "."))
        or text.count("/") > 1
        or "\\" in text
    )
