"""The completion cache (memory LRU and the persistent layer) and forward-typing reuse."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from starcoder_ls.cache import CompletionCache, ForwardCache, default_disk_path
from starcoder_ls.settings import CacheSettings
from starcoder_ls.types import GenerationParams

PARAMS = GenerationParams(max_tokens=64, temperature=0.0, stop=("\n",))


def memory_cache(entries: int = 3) -> CompletionCache:
    return CompletionCache(CacheSettings(memory_entries=entries, disk=False))


def disk_cache(path: Path, **kw: object) -> CompletionCache:
    return CompletionCache(CacheSettings(disk=True, disk_path=str(path), **kw))  # type: ignore[arg-type]


# -- keys ----------------------------------------------------------------------------------


def test_key_is_a_short_stable_digest_of_model_prompt_and_params() -> None:
    prompt = "<fim_prefix>def f():\n" + "x = 1\n" * 2000 + "<fim_suffix><fim_middle>"
    key = CompletionCache.make_key("tiny.gguf", prompt, PARAMS)
    assert len(key) == 64 and int(key, 16) >= 0
    assert key == CompletionCache.make_key(
        "tiny.gguf", prompt, GenerationParams(64, 0.0, 1.0, ("\n",))
    )
    others = {
        CompletionCache.make_key("other.gguf", prompt, PARAMS),
        CompletionCache.make_key("tiny.gguf", prompt + " ", PARAMS),
        CompletionCache.make_key(
            "tiny.gguf", prompt, GenerationParams(max_tokens=32, stop=("\n",))
        ),
        CompletionCache.make_key("tiny.gguf", prompt, GenerationParams(max_tokens=64)),
        CompletionCache.make_key("tiny.gguf", prompt, GenerationParams(64, 0.2, stop=("\n",))),
    }
    assert key not in others and len(others) == 5


def test_key_accepts_any_text() -> None:
    key = CompletionCache.make_key("m", "\ud800 lone surrogate, 😀, \x00", PARAMS)
    assert len(key) == 64


# -- memory LRU ----------------------------------------------------------------------------


def test_lru_evicts_the_least_recently_used() -> None:
    cache = memory_cache(entries=3)
    for k in "abc":
        cache.put(k, k.upper())
    assert cache.get("a") == "A"  # a is now the most recent; b is the oldest
    cache.put("d", "D")
    assert cache.get("b") is None
    assert [cache.get(k) for k in "acd"] == ["A", "C", "D"]
    cache.put("e", "E")  # c is the oldest now (a, c, d were read in that order)
    assert cache.get("a") is None
    assert len(cache) == 3


def test_put_replaces_and_refreshes() -> None:
    cache = memory_cache(entries=2)
    cache.put("a", "1")
    cache.put("b", "2")
    cache.put("a", "3")
    cache.put("c", "4")
    assert cache.get("a") == "3" and cache.get("b") is None


def test_disabled_or_zero_sized_cache_stores_nothing() -> None:
    off = CompletionCache(CacheSettings(enabled=False))
    off.put("k", "v")
    assert off.get("k") is None
    empty = memory_cache(entries=0)
    empty.put("k", "v")
    assert empty.get("k") is None


def test_empty_completion_is_a_hit_not_a_miss() -> None:
    cache = memory_cache()
    cache.put("k", "")
    assert cache.get("k") == ""


def test_threads_share_one_cache() -> None:
    cache = memory_cache(entries=64)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(300):
                key = f"{n}-{i % 80}"
                cache.put(key, key)
                got = cache.get(key)
                assert got in (None, key)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(cache) == 64


# -- disk ----------------------------------------------------------------------------------


def test_disk_layer_survives_a_restart(tmp_path: Path) -> None:
    key = CompletionCache.make_key("m", "prompt", PARAMS)
    first = disk_cache(tmp_path / "c")
    first.put(key, "return x")
    first.close()
    second = disk_cache(tmp_path / "c")
    assert second.get(key) == "return x"
    assert second.get(CompletionCache.make_key("m", "other", PARAMS)) is None
    second.close()


def test_two_live_instances_see_each_other(tmp_path: Path) -> None:
    a, b = disk_cache(tmp_path), disk_cache(tmp_path)
    a.put("k", "v")
    assert b.get("k") == "v"
    a.close()
    b.close()


def test_disk_hit_is_promoted_to_memory(tmp_path: Path) -> None:
    writer = disk_cache(tmp_path)
    writer.put("k", "v")
    writer.close()
    reader = disk_cache(tmp_path)
    assert len(reader) == 0
    assert reader.get("k") == "v"
    assert len(reader) == 1


def test_disk_layer_is_size_capped(tmp_path: Path) -> None:
    cache = disk_cache(tmp_path, disk_size_mb=1, memory_entries=1)
    blob = "x" * 200_000
    for i in range(30):  # 6 MB written into a 1 MB cache
        cache.put(f"k{i}", blob + str(i))
    import diskcache

    with diskcache.Cache(str(tmp_path)) as raw:
        assert raw.volume() < 2 * 1024 * 1024
        assert len(raw) < 30
    assert cache.get("k29") == blob + "29"  # the newest is kept
    cache.close()


def test_default_disk_path_follows_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_disk_path() == tmp_path / "xdg" / "starcoder-ls" / "completions"
    cache = CompletionCache(CacheSettings(disk=True))
    cache.put("k", "v")
    assert (tmp_path / "xdg" / "starcoder-ls" / "completions").is_dir()
    cache.close()
    assert CompletionCache(CacheSettings(disk=True)).get("k") == "v"

    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_disk_path() == tmp_path / "home" / ".cache" / "starcoder-ls" / "completions"


def test_disk_path_that_is_a_file_falls_back_to_memory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache directory should be")
    cache = disk_cache(blocker)
    with caplog.at_level(logging.WARNING, logger="starcoder_ls.cache"):
        for i in range(5):
            cache.put(f"k{i}", f"v{i}")
            assert cache.get(f"k{i}") == f"v{i}"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert str(blocker) in warnings[0].getMessage()


def test_corrupt_database_falls_back_to_memory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = disk_cache(tmp_path)
    good.put("k", "v")
    good.close()
    (tmp_path / "cache.db").write_bytes(b"this is not sqlite" * 100)
    cache = disk_cache(tmp_path)
    with caplog.at_level(logging.WARNING, logger="starcoder_ls.cache"):
        assert cache.get("k") is None
        cache.put("k2", "v2")
        assert cache.get("k2") == "v2"
        cache.put("k3", "v3")
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1


# -- forward typing ------------------------------------------------------------------------

URI = "file:///w/a.py"


def test_forward_typing_serves_the_rest() -> None:
    fwd = ForwardCache()
    fwd.remember(URI, 3, "    result = ", "compute(a, b)")
    assert fwd.lookup(URI, 3, "    result = c") == "ompute(a, b)"
    assert fwd.lookup(URI, 3, "    result = comp") == "ute(a, b)"
    assert fwd.lookup(URI, 3, "    result = compute(a, b") == ")"
    # the entry stays until the user leaves the completion
    assert fwd.lookup(URI, 3, "    result = compute(") == "a, b)"


def test_nothing_typed_yet_gives_the_whole_completion() -> None:
    fwd = ForwardCache()
    fwd.remember(URI, 0, "x = ", "1")
    assert fwd.lookup(URI, 0, "x = ") == "1"


@pytest.mark.parametrize(
    ("line", "prefix_line"),
    [
        (4, "    result = c"),  # another line
        (3, "    result "),  # deleted characters
        (3, "    result = x"),  # typed something else
        (3, "    result = compute(a, b)"),  # typed all of it: nothing left to offer
        (3, "    result = compute(a, b);"),  # typed past it
    ],
)
def test_anything_else_drops_the_entry(line: int, prefix_line: str) -> None:
    fwd = ForwardCache()
    fwd.remember(URI, 3, "    result = ", "compute(a, b)")
    assert fwd.lookup(URI, line, prefix_line) is None
    assert fwd.lookup(URI, 3, "    result = c") is None  # dropped, even for a good lookup


def test_multi_line_completion_typing_within_the_first_line() -> None:
    fwd = ForwardCache()
    body = "if n < 2:\n        return n\n    return fib(n - 1)"
    fwd.remember(URI, 1, "    ", body)
    assert fwd.lookup(URI, 1, "    if n") == " < 2:\n        return n\n    return fib(n - 1)"
    assert fwd.lookup(URI, 1, "    if n < 2:") == "\n        return n\n    return fib(n - 1)"
    assert fwd.lookup(URI, 1, "    if n > ") is None


def test_documents_are_independent_and_bounded() -> None:
    fwd = ForwardCache(max_documents=2)
    fwd.remember("a", 0, "", "alpha")
    fwd.remember("b", 0, "", "beta")
    assert fwd.lookup("a", 0, "al") == "pha"
    fwd.remember("c", 0, "", "gamma")  # b is the least recently used document
    assert fwd.lookup("b", 0, "b") is None
    assert fwd.lookup("a", 0, "a") == "lpha"
    assert fwd.lookup("c", 0, "g") == "amma"
    fwd.forget("c")
    assert fwd.lookup("c", 0, "g") is None


def test_remembering_replaces_and_empty_forgets() -> None:
    fwd = ForwardCache()
    fwd.remember(URI, 0, "x = ", "1")
    fwd.remember(URI, 0, "x = ", "2 + 3")
    assert fwd.lookup(URI, 0, "x = 2") == " + 3"
    fwd.remember(URI, 0, "x = ", "")
    assert fwd.lookup(URI, 0, "x = ") is None
