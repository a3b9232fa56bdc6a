"""``starcoder-ls models pull`` and ``models list`` against a local server that speaks the
Hugging Face Hub's file protocol (``HF_ENDPOINT``), the way huggingface_hub talks to the Hub:

- ``HEAD /{repo}/resolve/{revision}/{file}``: 302 to the storage URL with ``X-Repo-Commit``,
  ``X-Linked-Etag`` (the LFS file's SHA-256) and ``X-Linked-Size``; errors carry
  ``X-Error-Code`` (``EntryNotFound`` with 404, ``GatedRepo``/``RepoNotFound`` with 401);
- ``GET`` of the storage URL, honouring ``Range`` (206 with ``Content-Range``).

The hub cannot be reached from here, so this stand-in is the only way to run the real download
code; everything else (the CLI, huggingface_hub, the HF cache, the llamacpp backend finding
the file) is the real thing.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from starcoder_ls.models import BUNDLED_GGUF

pytest.importorskip("huggingface_hub")

REPO = "QuantFactory/starcoder2-3b-GGUF"
FILE = "starcoder2-3b.Q4_K_M.gguf"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class FakeHub:
    files: dict[tuple[str, str], bytes] = field(default_factory=dict)
    gated: set[str] = field(default_factory=set)
    announce: dict[tuple[str, str], str] = field(default_factory=dict)
    """A SHA-256 to announce instead of the real one (a corrupt transfer)."""
    cut_first_get_at: int | None = None
    """Close the connection after this many bytes of the first GET (an interrupted download)."""
    ranges: list[str] = field(default_factory=list)
    gets: int = 0
    url: str = ""
    storage_url: str = ""


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _error(self, status: int, code: str, message: str) -> None:
            self.send_response(status)
            self.send_header("X-Error-Code", code)
            self.send_header("X-Error-Message", message)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_HEAD(self) -> None:
            if self.path.startswith("/cdn/"):  # the storage host answers HEAD too
                repo, _, name = self.path[len("/cdn/") :].rpartition("/")
                self.send_response(200)
                self.send_header("Content-Length", str(len(hub.files[(repo, name)])))
                self.end_headers()
                return
            parts = self.path.split("/resolve/", 1)
            if len(parts) != 2:
                self._error(404, "RepoNotFound", "Repository not found")
                return
            repo = parts[0].lstrip("/")
            _revision, _, name = parts[1].partition("/")
            if repo in hub.gated and "authorization" not in {k.lower() for k in self.headers}:
                self._error(401, "GatedRepo", "Access to this model is restricted")
                return
            data = hub.files.get((repo, name))
            if data is None:
                if any(r == repo for r, _ in hub.files):
                    self._error(404, "EntryNotFound", "Entry not found")
                else:
                    self._error(401, "RepoNotFound", "Repository not found")
                return
            sha = hub.announce.get((repo, name), hashlib.sha256(data).hexdigest())
            self.send_response(302)
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("X-Linked-Etag", f'"{sha}"')
            self.send_header("X-Linked-Size", str(len(data)))
            self.send_header("ETag", '"not-the-lfs-etag"')
            # Another host name for the same server: the Hub's files live on a storage host.
            self.send_header("Location", f"{hub.storage_url}/cdn/{repo}/{name}")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            if not self.path.startswith("/cdn/"):
                self.do_HEAD()
                return
            repo, _, name = self.path[len("/cdn/") :].rpartition("/")
            data = hub.files[(repo, name)]
            hub.gets += 1
            start = 0
            if (rng := self.headers.get("Range")) is not None:
                hub.ranges.append(rng)
                start = int(rng.split("=")[1].split("-")[0])
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            body = data[start:]
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if hub.gets == 1 and hub.cut_first_get_at is not None:
                self.wfile.write(body[: hub.cut_first_get_at])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)
                return
            self.wfile.write(body)

    return Handler


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    state = FakeHub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    state.storage_url = f"http://localhost:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def run_cli(*args: str, hub: FakeHub, home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {
        **os.environ,
        "HF_ENDPOINT": hub.url,
        "HF_HOME": str(home),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_ETAG_TIMEOUT": "5",
        "HF_HUB_DOWNLOAD_TIMEOUT": "5",
        **env,
    }
    environ.pop("HF_TOKEN", None)
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-m", "starcoder_ls.cli", *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=120,
    )


def test_pull_downloads_into_the_hf_cache_and_complete_finds_it(
    hub: FakeHub, tmp_path: Path
) -> None:
    payload = BUNDLED_GGUF.read_bytes()  # a real GGUF, so the backend can load what was pulled
    hub.files[(REPO, FILE)] = payload
    done = run_cli("models", "pull", "starcoder2-3b", "--json", hub=hub, home=tmp_path)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    path = Path(out["path"])
    assert path.read_bytes() == payload
    assert str(tmp_path / "hub" / "models--QuantFactory--starcoder2-3b-GGUF") in str(path)
    assert out["quant"] == "Q4_K_M" and out["settings"]["model"] == "bigcode/starcoder2-3b"

    listed = json.loads(run_cli("models", "list", "--json", hub=hub, home=tmp_path).stdout)
    row = next(r for r in listed if r["id"] == "bigcode/starcoder2-3b")
    assert row["present"] and row["source"] == "pulled" and row["path"] == str(path)

    # The llamacpp backend finds the pulled file from the registry name, offline.
    example = Path(__file__).resolve().parents[1] / "examples" / "demo.py"
    completed = run_cli(
        "complete", f"{example}:8:5", "--model", "bigcode/starcoder2-3b", "--json",
        hub=hub, home=tmp_path, HF_HUB_OFFLINE="1",
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout)["family"] == "starcoder2"


def test_an_interrupted_download_resumes(hub: FakeHub, tmp_path: Path) -> None:
    # huggingface_hub writes what it receives in 10 MB chunks: cut the transfer after the first.
    payload = os.urandom(24 << 20)
    hub.files[(REPO, FILE)] = payload
    hub.cut_first_get_at = 12 << 20
    first = run_cli("models", "pull", "starcoder2-3b", "--json", hub=hub, home=tmp_path)
    if first.returncode != 0:  # the library gave up: a second pull picks up the rest
        assert "failed" in first.stderr
        first = run_cli("models", "pull", "starcoder2-3b", "--json", hub=hub, home=tmp_path)
    assert first.returncode == 0, first.stderr
    assert Path(json.loads(first.stdout)["path"]).read_bytes() == payload
    # The second request asked for the rest only.
    assert hub.gets == 2 and len(hub.ranges) == 1
    offset = int(hub.ranges[0].split("=")[1].rstrip("-"))
    assert 0 < offset <= 12 << 20


def test_a_checksum_mismatch_is_refused_and_removed(hub: FakeHub, tmp_path: Path) -> None:
    hub.files[(REPO, FILE)] = b"GGUF" + os.urandom(4096)
    hub.announce[(REPO, FILE)] = hashlib.sha256(b"something else").hexdigest()
    done = run_cli("models", "pull", "starcoder2-3b", hub=hub, home=tmp_path)
    assert done.returncode == 1
    assert "SHA-256" in done.stderr and "removed" in done.stderr
    assert not list((tmp_path / "hub").rglob(FILE))  # nothing left that looks downloaded


def test_missing_file_and_gated_repo_errors(hub: FakeHub, tmp_path: Path) -> None:
    hub.files[(REPO, "other.gguf")] = b"x"
    missing = run_cli("models", "pull", "starcoder2-3b", hub=hub, home=tmp_path)
    assert missing.returncode == 1 and "404" in missing.stderr and FILE in missing.stderr

    hub.files[(REPO, FILE)] = b"GGUF"
    hub.gated.add(REPO)
    gated = run_cli("models", "pull", "starcoder2-3b", hub=hub, home=tmp_path)
    assert gated.returncode == 1
    assert "gated" in gated.stderr and "HF_TOKEN" in gated.stderr

    unknown = run_cli("models", "pull", "starcoder2-7b", hub=hub, home=tmp_path)
    assert unknown.returncode == 1 and "HF_TOKEN" in unknown.stderr  # 401 RepoNotFound

    bad_quant = run_cli(
        "models", "pull", "starcoder2-3b", "--quant", "Q9_X", hub=hub, home=tmp_path
    )
    assert bad_quant.returncode == 1 and "Q4_K_M" in bad_quant.stderr

    not_pullable = run_cli("models", "pull", "no-such-model", hub=hub, home=tmp_path)
    assert not_pullable.returncode == 1 and "starcoder2-3b" in not_pullable.stderr


def test_offline_with_nothing_cached_names_the_pull_command(hub: FakeHub, tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[1] / "examples" / "demo.py"
    done = run_cli(
        "complete", f"{example}:8:5", "--model", "bigcode/starcoder2-3b",
        hub=hub, home=tmp_path, HF_HUB_OFFLINE="1",
    )  # fmt: skip
    assert done.returncode == 1
    assert "starcoder-ls models pull starcoder2-3b" in done.stderr
    pulled = run_cli("models", "pull", "starcoder2-3b", hub=hub, home=tmp_path, HF_HUB_OFFLINE="1")
    assert pulled.returncode == 1 and "offline" in pulled.stderr.lower()
