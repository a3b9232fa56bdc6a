"""Import resolution against small fixture workspaces, one per language family.

The workspaces are path lists (and a dict of config texts served through ``read``): resolution
never touches the filesystem, so nothing here needs a directory on disk.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping

import pytest

from starcoder_ls.context.imports import MAX_TARGETS, WorkspaceFiles, resolve_import
from starcoder_ls.context.imports_workspace import normalize, parse_jsonc
from starcoder_ls.context.symbols import ImportRef


def workspace(
    paths: Iterable[str],
    configs: Mapping[str, str] | None = None,
    packages: Mapping[str, str] | None = None,
) -> WorkspaceFiles:
    texts = dict(configs or {})
    return WorkspaceFiles(paths, read=texts.get, packages=packages)


def res(
    files: WorkspaceFiles,
    language: str,
    from_path: str,
    module: str,
    names: tuple[str, ...] = (),
    level: int = 0,
    kind: str = "import",
) -> tuple[str, ...]:
    return resolve_import(
        ImportRef(module, names, level=level, kind=kind), from_path, language, files
    )


# -- python ---------------------------------------------------------------------------------

PY = [
    "app/__init__.py",
    "app/main.py",
    "app/util.py",
    "app/models/__init__.py",
    "app/models/user.py",
    "app/models/base.py",
    "app/sub/__init__.py",
    "app/sub/helpers.py",
    "app/sub/deep/__init__.py",
    "app/sub/deep/mod.py",
    "app/sub/deep/sibling.py",
    "src/corelib/__init__.py",
    "src/corelib/io.py",
    "lib/pkg/__init__.py",
    "lib/pkg/thing.py",
    "nsp/part/mod.py",
    "typed.pyi",
    "top.py",
    "scripts/run.py",
    "scripts/helper.py",
]


@pytest.fixture
def py() -> WorkspaceFiles:
    return workspace(PY)


def test_python_absolute_modules(py: WorkspaceFiles) -> None:
    assert res(py, "python", "app/main.py", "app.models.user") == ("app/models/user.py",)
    assert res(py, "python", "scripts/run.py", "app.models") == ("app/models/__init__.py",)
    assert res(py, "python", "app/main.py", "app") == ("app/__init__.py",)
    assert res(py, "python", "app/main.py", "typed") == ("typed.pyi",)
    assert res(py, "python", "app/main.py", "top") == ("top.py",)


def test_python_from_import_submodule_versus_name(py: WorkspaceFiles) -> None:
    assert res(py, "python", "app/main.py", "app.models", ("user",)) == ("app/models/user.py",)
    assert res(py, "python", "app/main.py", "app.models", ("User",)) == ("app/models/__init__.py",)
    assert res(py, "python", "app/main.py", "app.models", ("user", "Base", "base")) == (
        "app/models/user.py",
        "app/models/__init__.py",
        "app/models/base.py",
    )
    assert res(py, "python", "app/main.py", "app", ("util",)) == ("app/util.py",)
    assert res(py, "python", "app/main.py", "app.models.user", ("*",)) == ("app/models/user.py",)


def test_python_source_roots(py: WorkspaceFiles) -> None:
    assert res(py, "python", "app/main.py", "corelib.io") == ("src/corelib/io.py",)
    assert res(py, "python", "app/main.py", "corelib", ("io",)) == ("src/corelib/io.py",)
    # lib/pkg/__init__.py makes lib/ a root for pkg.
    assert res(py, "python", "app/main.py", "pkg") == ("lib/pkg/__init__.py",)
    assert res(py, "python", "app/main.py", "pkg", ("thing",)) == ("lib/pkg/thing.py",)
    # A script's own directory (not a package) is a root for its siblings.
    assert res(py, "python", "scripts/run.py", "helper") == ("scripts/helper.py",)


def test_python_namespace_packages(py: WorkspaceFiles) -> None:
    assert res(py, "python", "app/main.py", "nsp.part", ("mod",)) == ("nsp/part/mod.py",)
    assert res(py, "python", "app/main.py", "nsp.part.mod") == ("nsp/part/mod.py",)
    assert res(py, "python", "app/main.py", "nsp.part") == ()  # no file to show


def test_python_relative_levels(py: WorkspaceFiles) -> None:
    here = "app/sub/deep/mod.py"
    assert res(py, "python", here, "", ("sibling",), level=1) == ("app/sub/deep/sibling.py",)
    assert res(py, "python", here, "sibling", ("f",), level=1) == ("app/sub/deep/sibling.py",)
    assert res(py, "python", here, "", ("Thing",), level=1) == ("app/sub/deep/__init__.py",)
    assert res(py, "python", here, "", ("helpers",), level=2) == ("app/sub/helpers.py",)
    assert res(py, "python", here, "helpers", ("h",), level=2) == ("app/sub/helpers.py",)
    assert res(py, "python", here, "models", ("user",), level=3) == ("app/models/user.py",)
    assert res(py, "python", here, "models.user", ("User",), level=3) == ("app/models/user.py",)
    assert res(py, "python", here, "", ("util",), level=3) == ("app/util.py",)
    assert res(py, "python", here, "", ("top",), level=4) == ("top.py",)
    assert res(py, "python", here, "", ("top",), level=5) == ()  # above the root
    assert res(py, "python", "app/models/user.py", "", ("Thing",), level=1) == (
        "app/models/__init__.py",
    )


def test_python_external_and_shadowing(py: WorkspaceFiles) -> None:
    for module in ("os", "os.path", "numpy", "typing"):
        assert res(py, "python", "app/main.py", module) == ()
    assert res(py, "python", "app/main.py", "typing", ("Any",)) == ()
    # app/models lives inside package app: it is not a top-level ``models``.
    assert res(py, "python", "app/main.py", "models") == ()


# -- javascript / typescript ----------------------------------------------------------------

TSCONFIG = """{
  // the web app
  "compilerOptions": {
    /* resolution */
    "baseUrl": ".",
    "paths": {
      "@app/*": ["src/*"],
      "~utils": ["src/util.ts"],  // exact alias
    },
  },
  "include": ["src/**/*", "http://example.com/*"],
}
"""

JS = [
    "web/tsconfig.json",
    "web/src/index.ts",
    "web/src/util.ts",
    "web/src/a.ts",
    "web/src/view.tsx",
    "web/src/components/index.ts",
    "web/src/components/Button.tsx",
    "web/src/lib/helpers.js",
    "web/src/types.d.ts",
    "web/src/both.ts",
    "web/src/both.js",
    "web/src/data.json",
    "js/main.js",
    "js/dir/index.js",
    "packages/ui/package.json",
    "packages/ui/src/index.tsx",
    "packages/ui/src/button.tsx",
]
JS_CONFIGS = {
    "web/tsconfig.json": TSCONFIG,
    "packages/ui/package.json": json.dumps({"name": "@acme/ui", "main": "dist/index.js"}),
}


@pytest.fixture
def js() -> WorkspaceFiles:
    return workspace(JS, JS_CONFIGS)


def test_js_relative_extensions_and_index(js: WorkspaceFiles) -> None:
    f = "web/src/index.ts"
    assert res(js, "typescript", f, "./util") == ("web/src/util.ts",)
    assert res(js, "typescript", f, "./view") == ("web/src/view.tsx",)
    assert res(js, "typescript", f, "./components") == ("web/src/components/index.ts",)
    assert res(js, "typescript", f, "./components/Button") == ("web/src/components/Button.tsx",)
    assert res(js, "typescript", f, "./lib/helpers") == ("web/src/lib/helpers.js",)
    assert res(js, "typescript", f, "./types") == ("web/src/types.d.ts",)
    assert res(js, "typescript", f, "./data.json") == ("web/src/data.json",)
    assert res(js, "tsx", "web/src/components/Button.tsx", "../util") == ("web/src/util.ts",)
    assert res(js, "javascript", "js/main.js", "./dir") == ("js/dir/index.js",)
    assert res(js, "typescript", f, "./missing") == ()


def test_ts_js_extension_maps_to_ts_source(js: WorkspaceFiles) -> None:
    assert res(js, "typescript", "web/src/index.ts", "./a.js") == ("web/src/a.ts",)
    assert res(js, "typescript", "web/src/index.ts", "./view.jsx") == ("web/src/view.tsx",)
    assert res(js, "typescript", "web/src/index.ts", "./util.js?raw") == ("web/src/util.ts",)


def test_js_extension_order_depends_on_language(js: WorkspaceFiles) -> None:
    assert res(js, "typescript", "web/src/index.ts", "./both") == ("web/src/both.ts",)
    assert res(js, "javascript", "web/src/lib/helpers.js", "../both") == ("web/src/both.js",)


def test_tsconfig_paths_and_base_url_with_comments(js: WorkspaceFiles) -> None:
    f = "web/src/components/Button.tsx"
    assert res(js, "tsx", f, "@app/util") == ("web/src/util.ts",)
    assert res(js, "tsx", f, "@app/components") == ("web/src/components/index.ts",)
    assert res(js, "tsx", f, "~utils") == ("web/src/util.ts",)
    assert res(js, "tsx", f, "src/a") == ("web/src/a.ts",)  # baseUrl
    # Outside web/ that tsconfig does not apply.
    assert res(js, "javascript", "js/main.js", "@app/util") == ()


def test_tsconfig_extends() -> None:
    files = workspace(
        ["app/src/x.ts", "app/src/shared/log.ts", "app/tsconfig.json"],
        {
            "app/tsconfig.json": '{"extends": "./tsconfig.base", "compilerOptions": {}}',
            "app/tsconfig.base.json": '{"compilerOptions": {"paths": {"#/*": ["./src/*"]}}}',
        },
    )
    assert res(files, "typescript", "app/src/x.ts", "#/shared/log") == ("app/src/shared/log.ts",)


def test_workspace_packages(js: WorkspaceFiles) -> None:
    f = "web/src/index.ts"
    assert res(js, "typescript", f, "@acme/ui") == ("packages/ui/src/index.tsx",)
    assert res(js, "typescript", f, "@acme/ui/button") == ("packages/ui/src/button.tsx",)
    # package.json not indexed, found by probing a directory named like the package.
    probed = workspace(
        ["apps/web/main.js", "libs/core/lib/index.js"],
        {"libs/core/package.json": json.dumps({"name": "core", "main": "lib/index.js"})},
    )
    assert res(probed, "javascript", "apps/web/main.js", "core") == ("libs/core/lib/index.js",)


def test_js_external_and_escaping(js: WorkspaceFiles) -> None:
    f = "web/src/index.ts"
    for spec in ("react", "react-dom/client", "node:fs", "fs", "@types/node", "/abs/x"):
        assert res(js, "typescript", f, spec) == ()
    assert res(js, "typescript", f, "../../../../etc/passwd") == ()


def test_parse_jsonc() -> None:
    text = '{"a": "x // not a comment", /* c */ "b": ["/* nor this */", 1,], // end\n "c": "\\"",}'
    assert parse_jsonc(text) == {"a": "x // not a comment", "b": ["/* nor this */", 1], "c": '"'}
    assert parse_jsonc('{"p": "C:\\\\", "q": "a/*b*/c", /* unterminated') is None
    assert parse_jsonc('{"p": "C:\\\\", "q": "a/*b*/c", // x\n}') == {"p": "C:\\", "q": "a/*b*/c"}
    assert parse_jsonc("{broken") is None


# -- go -------------------------------------------------------------------------------------

GO = [
    "go.mod",
    "cmd/server/main.go",
    "internal/store/db.go",
    "internal/store/cache.go",
    "internal/store/db_test.go",
    "services/billing/main.go",
    "services/billing/api/api.go",
    "vendor/github.com/pkg/errors/errors.go",
    "tools/fmt/fmt.go",
]
GO_CONFIGS = {
    "go.mod": "module github.com/acme/app\n\ngo 1.22\n",
    "services/billing/go.mod": "// billing\nmodule github.com/acme/billing\n",
}


@pytest.mark.parametrize("indexed", [True, False], ids=["gomod-indexed", "gomod-probed"])
def test_go_multi_module(indexed: bool) -> None:
    files = workspace(GO + (["services/billing/go.mod"] if indexed else []), GO_CONFIGS)
    f = "cmd/server/main.go"
    assert res(files, "go", f, "github.com/acme/app/internal/store") == (
        "internal/store/cache.go",
        "internal/store/db.go",
    )
    assert res(files, "go", f, "github.com/acme/billing/api") == ("services/billing/api/api.go",)
    assert res(files, "go", f, "github.com/acme/billing") == ("services/billing/main.go",)
    g = "services/billing/main.go"
    assert res(files, "go", g, "github.com/acme/billing/api") == ("services/billing/api/api.go",)
    assert res(files, "go", g, "github.com/acme/app/internal/store")[0] == "internal/store/cache.go"


def test_go_external() -> None:
    files = workspace(GO, GO_CONFIGS)
    for path in ("fmt", "net/http", "github.com/pkg/errors", "github.com/acme/app/missing"):
        assert res(files, "go", "cmd/server/main.go", path) == ()


def test_go_mod_change_is_seen_after_add() -> None:
    configs = dict(GO_CONFIGS)
    files = WorkspaceFiles(GO, read=configs.get)
    assert res(files, "go", "cmd/server/main.go", "example.org/x/internal/store") == ()
    configs["go.mod"] = "module example.org/x\n"
    files.add("go.mod")
    assert res(files, "go", "cmd/server/main.go", "example.org/x/internal/store") == (
        "internal/store/cache.go",
        "internal/store/db.go",
    )


# -- rust -----------------------------------------------------------------------------------

RUST = [
    "src/lib.rs",
    "src/store.rs",
    "src/store/db.rs",
    "src/store/cache/mod.rs",
    "src/util/mod.rs",
    "src/util/strings.rs",
    "crates/helpers/src/lib.rs",
    "crates/helpers/src/fmt.rs",
]


@pytest.fixture
def rs() -> WorkspaceFiles:
    return workspace(RUST)


def test_rust_mod_declarations(rs: WorkspaceFiles) -> None:
    assert res(rs, "rust", "src/lib.rs", "store", kind="mod") == ("src/store.rs",)
    assert res(rs, "rust", "src/lib.rs", "util", kind="mod") == ("src/util/mod.rs",)
    assert res(rs, "rust", "src/store.rs", "db", kind="mod") == ("src/store/db.rs",)
    assert res(rs, "rust", "src/store.rs", "cache", kind="mod") == ("src/store/cache/mod.rs",)
    assert res(rs, "rust", "src/util/mod.rs", "strings", kind="mod") == ("src/util/strings.rs",)
    assert res(rs, "rust", "src/lib.rs", "nope", kind="mod") == ()


def test_rust_crate_paths(rs: WorkspaceFiles) -> None:
    f = "src/util/strings.rs"
    assert res(rs, "rust", f, "crate::store::db::Db") == ("src/store/db.rs",)
    assert res(rs, "rust", f, "crate::store::Store") == ("src/store.rs",)
    assert res(rs, "rust", f, "crate::store::cache") == ("src/store/cache/mod.rs",)
    assert res(rs, "rust", f, "crate::Config") == ("src/lib.rs",)
    assert res(rs, "rust", f, "crate::store::{db, Store}") == ("src/store/db.rs", "src/store.rs")
    assert res(rs, "rust", f, "crate::store", ("db", "Store")) == (
        "src/store/db.rs",
        "src/store.rs",
    )


def test_rust_super_and_self(rs: WorkspaceFiles) -> None:
    f = "src/store/db.rs"
    assert res(rs, "rust", f, "super::Store") == ("src/store.rs",)
    assert res(rs, "rust", f, "super::cache::Cache") == ("src/store/cache/mod.rs",)
    assert res(rs, "rust", f, "super::super::util::strings") == ("src/util/strings.rs",)
    assert res(rs, "rust", "src/util/strings.rs", "super::*") == ("src/util/mod.rs",)
    assert res(rs, "rust", "src/store.rs", "self::db::Db") == ("src/store/db.rs",)
    assert res(rs, "rust", "src/store/cache/mod.rs", "super::db") == ("src/store/db.rs",)
    assert res(rs, "rust", "src/lib.rs", "super::x") == ()


def test_rust_workspace_and_external_crates(rs: WorkspaceFiles) -> None:
    assert res(rs, "rust", "src/lib.rs", "helpers::fmt::pad") == ("crates/helpers/src/fmt.rs",)
    assert res(rs, "rust", "src/lib.rs", "helpers") == ("crates/helpers/src/lib.rs",)
    for path in ("std::collections::HashMap", "serde::Serialize", "tokio"):
        assert res(rs, "rust", "src/store.rs", path) == ()
    # A child module named in a 2018 path.
    assert res(rs, "rust", "src/store.rs", "db::Db") == ("src/store/db.rs",)


def test_rust_binary_and_integration_tests_use_the_library_by_name() -> None:
    files = workspace(
        [
            "crates/mylib/src/lib.rs",
            "crates/mylib/src/main.rs",
            "crates/mylib/src/store.rs",
            "crates/mylib/tests/it.rs",
            "crates/mylib/tests/common/mod.rs",
        ]
    )
    store = ("crates/mylib/src/store.rs",)
    assert res(files, "rust", "crates/mylib/src/main.rs", "mylib::store::Db") == store
    assert res(files, "rust", "crates/mylib/tests/it.rs", "mylib::store::Db") == store
    assert res(files, "rust", "crates/mylib/tests/it.rs", "common", kind="mod") == (
        "crates/mylib/tests/common/mod.rs",
    )


# -- java -----------------------------------------------------------------------------------

JAVA = [
    "app/src/main/java/com/acme/store/Db.java",
    "app/src/main/java/com/acme/store/Cache.java",
    "app/src/main/java/com/acme/util/Strings.java",
    "legacy/Odd.java",
    "legacy/Other.java",
]
JAVA_PACKAGES = {"legacy/Odd.java": "com.acme.legacy", "legacy/Other.java": "com.acme.legacy"}


@pytest.fixture
def java() -> WorkspaceFiles:
    return workspace(JAVA, packages=JAVA_PACKAGES)


def test_java_classes_and_wildcards(java: WorkspaceFiles) -> None:
    f = "app/src/main/java/com/acme/App.java"
    root = "app/src/main/java/com/acme/"
    assert res(java, "java", f, "com.acme.store.Db") == (root + "store/Db.java",)
    assert res(java, "java", f, "com.acme.store.Db.Entry") == (root + "store/Db.java",)
    assert res(java, "java", f, "com.acme.store.*") == (
        root + "store/Cache.java",
        root + "store/Db.java",
    )
    assert res(java, "java", f, "com.acme.legacy.Odd") == ("legacy/Odd.java",)
    assert res(java, "java", f, "com.acme.legacy.*") == ("legacy/Odd.java", "legacy/Other.java")


def test_java_static_imports(java: WorkspaceFiles) -> None:
    f = "app/src/main/java/com/acme/App.java"
    strings = "app/src/main/java/com/acme/util/Strings.java"
    assert res(java, "java", f, "com.acme.util.Strings.pad") == (strings,)
    assert res(java, "java", f, "static com.acme.util.Strings.pad") == (strings,)
    assert res(java, "java", f, "com.acme.util.Strings.*") == (strings,)


def test_java_external(java: WorkspaceFiles) -> None:
    for name in ("java.util.List", "java.util.*", "org.junit.Test", "com.acme.store.Nope"):
        assert res(java, "java", "legacy/Odd.java", name) == ()


# -- c# -------------------------------------------------------------------------------------

CS = [
    "src/Acme.Store/Db.cs",
    "src/Acme.Store/Repo.cs",
    "src/Acme.Store/Models/User.cs",
    "src/Web/Controllers/HomeController.cs",
    "old/Acme/Billing/Invoice.cs",
    "old/Acme/Billing/Tax.cs",
]
CS_PACKAGES = {
    "src/Acme.Store/Db.cs": "Acme.Store",
    "src/Acme.Store/Repo.cs": "Acme.Store",
    "src/Acme.Store/Models/User.cs": "Acme.Store.Models",
    "src/Web/Controllers/HomeController.cs": "Acme.Web.Controllers",
}


def test_csharp_namespaces() -> None:
    files = workspace(CS, packages=CS_PACKAGES)
    f = "src/Web/Controllers/HomeController.cs"
    assert res(files, "csharp", f, "Acme.Store") == (
        "src/Acme.Store/Db.cs",
        "src/Acme.Store/Repo.cs",
    )
    assert res(files, "csharp", f, "Acme.Store.Models") == ("src/Acme.Store/Models/User.cs",)
    # Alias and ``using static`` name a type: its file.
    assert res(files, "csharp", f, "Store = Acme.Store.Db") == ("src/Acme.Store/Db.cs",)
    assert res(files, "csharp", f, "Acme.Store.Db") == ("src/Acme.Store/Db.cs",)
    # Namespaces not declared anywhere fall back to the directory layout.
    assert res(files, "csharp", f, "Acme.Billing") == (
        "old/Acme/Billing/Invoice.cs",
        "old/Acme/Billing/Tax.cs",
    )
    assert res(files, "csharp", f, "Acme.Billing.Tax") == ("old/Acme/Billing/Tax.cs",)
    for name in ("System", "System.Linq", "Microsoft.Extensions.Logging", "Newtonsoft.Json"):
        assert res(files, "csharp", f, name) == ()


# -- c / c++ --------------------------------------------------------------------------------

C = [
    "src/main.c",
    "src/util.h",
    "src/core/engine.c",
    "include/proj/api.h",
    "lib/net/sock.h",
    "lib/net/sock.c",
    "third/a/common.h",
    "third/a/impl/x.c",
    "third/b/common.h",
    "config.h",
]


def test_c_includes() -> None:
    files = workspace(C)
    assert res(files, "c", "src/main.c", "util.h", kind="include") == ("src/util.h",)
    assert res(files, "c", "src/core/engine.c", "../util.h") == ("src/util.h",)
    assert res(files, "c", "src/core/engine.c", "config.h") == ("config.h",)  # root
    assert res(files, "cpp", "src/main.c", "proj/api.h") == ("include/proj/api.h",)
    assert res(files, "c", "src/core/engine.c", "util.h") == ("src/util.h",)  # src/
    assert res(files, "c", "src/main.c", "net/sock.h") == ("lib/net/sock.h",)  # suffix
    # Two common.h: ambiguous from src/, the nearer one from third/a.
    assert res(files, "c", "src/main.c", "common.h") == ()
    assert res(files, "c", "third/a/impl/x.c", "common.h") == ("third/a/common.h",)
    assert res(files, "c", "src/main.c", "stdio.h") == ()
    assert res(files, "c", "src/main.c", "../../../util.h") == ()
    assert res(files, "c", "src/main.c", "/usr/include/stdio.h") == ()


def test_c_angle_includes_resolve_only_to_the_exact_path() -> None:
    files = workspace([*C, "compat/string.h"])
    # A library's own headers through its include directory (`#include <proj/api.h>`).
    assert res(files, "cpp", "src/main.c", "<proj/api.h>") == ("include/proj/api.h",)
    assert res(files, "c", "lib/net/sock.c", "<config.h>") == ("config.h",)
    # Never by suffix or next to the including file: those are the system's headers.
    assert res(files, "c", "src/main.c", "<string.h>") == ()
    assert res(files, "c", "src/main.c", "<util.h>") == ("src/util.h",)  # src/ is searched
    assert res(files, "c", "lib/net/sock.c", "<sock.h>") == ()


# -- php ------------------------------------------------------------------------------------

COMPOSER = json.dumps(
    {
        "autoload": {"psr-4": {"App\\": "app/", "Shared\\": ["shared/src/", "shared/lib/"]}},
        "autoload-dev": {"psr-4": {"Tests\\": "tests/"}},
    }
)
PHP = [
    "composer.json",
    "app/Models/User.php",
    "app/Models/Post.php",
    "app/Http/Controllers/HomeController.php",
    "shared/lib/Clock.php",
    "tests/Unit/UserTest.php",
    "lib/Acme/Util/Str.php",
    "modules/billing/Invoice.php",
    "legacy/acme/mail/mailer.php",
]


def test_php_psr4_namespaces_and_suffixes() -> None:
    files = workspace(PHP, {"composer.json": COMPOSER}, {"modules/billing/Invoice.php": "Billing"})
    f = "app/Http/Controllers/HomeController.php"
    assert res(files, "php", f, "App\\Models\\User") == ("app/Models/User.php",)
    assert res(files, "php", f, "\\App\\Models\\User") == ("app/Models/User.php",)
    assert res(files, "php", f, "Shared\\Clock") == ("shared/lib/Clock.php",)
    assert res(files, "php", f, "Tests\\Unit\\UserTest") == ("tests/Unit/UserTest.php",)
    assert res(files, "php", f, "App\\Models", ("User", "Post")) == (
        "app/Models/User.php",
        "app/Models/Post.php",
    )
    assert res(files, "php", f, "Billing\\Invoice") == ("modules/billing/Invoice.php",)
    assert res(files, "php", f, "Acme\\Util\\Str") == ("lib/Acme/Util/Str.php",)
    assert res(files, "php", f, "Acme\\Mail\\Mailer") == ("legacy/acme/mail/mailer.php",)
    for name in ("Illuminate\\Support\\Facades\\DB", "Exception", "App\\Models\\Nope"):
        assert res(files, "php", f, name) == ()


def test_php_without_composer_uses_case_insensitive_suffix() -> None:
    files = workspace(["app/Models/User.php", "app/Http/Kernel.php"])
    assert res(files, "php", "app/Http/Kernel.php", "App\\Models\\User") == ("app/Models/User.php",)


# -- ruby, lua ------------------------------------------------------------------------------

RUBY = [
    "lib/acme.rb",
    "lib/acme/store.rb",
    "app/models/user.rb",
    "app/models/concerns/named.rb",
    "config/boot.rb",
    "gems/tool/lib/tool.rb",
    "gems/tool/lib/tool/cli.rb",
    "script.rb",
]


def test_ruby_requires() -> None:
    files = workspace(RUBY)
    u = "app/models/user.rb"
    assert res(files, "ruby", u, "concerns/named", kind="require_relative") == (
        "app/models/concerns/named.rb",
    )
    assert res(files, "ruby", u, "../../config/boot", kind="require_relative") == (
        "config/boot.rb",
    )
    assert res(files, "ruby", u, "../../config/boot.rb", kind="require_relative") == (
        "config/boot.rb",
    )
    assert res(files, "ruby", u, "acme/store", kind="require") == ("lib/acme/store.rb",)
    assert res(files, "ruby", u, "acme", kind="require") == ("lib/acme.rb",)
    assert res(files, "ruby", u, "script", kind="require") == ("script.rb",)
    assert res(files, "ruby", "gems/tool/lib/tool.rb", "tool/cli", kind="require") == (
        "gems/tool/lib/tool/cli.rb",
    )
    assert res(files, "ruby", u, "json", kind="require") == ()
    assert res(files, "ruby", u, "../../../../x", kind="require_relative") == ()


def test_lua_requires() -> None:
    files = workspace(
        ["lua/myplugin/init.lua", "lua/myplugin/util.lua", "src/core/net.lua", "a/b.lua"]
    )
    f = "lua/myplugin/init.lua"
    assert res(files, "lua", f, "myplugin.util", kind="require") == ("lua/myplugin/util.lua",)
    assert res(files, "lua", "a/b.lua", "myplugin", kind="require") == ("lua/myplugin/init.lua",)
    assert res(files, "lua", f, "a.b", kind="require") == ("a/b.lua",)
    assert res(files, "lua", f, "core.net", kind="require") == ("src/core/net.lua",)
    assert res(files, "lua", f, "socket", kind="require") == ()


# -- the index itself -----------------------------------------------------------------------


def test_remove_makes_a_file_unresolvable(py: WorkspaceFiles) -> None:
    assert "app/util.py" in py
    n = len(py)
    py.remove("app/util.py")
    assert "app/util.py" not in py and len(py) == n - 1
    assert res(py, "python", "app/main.py", "app", ("util",)) == ("app/__init__.py",)
    py.remove("app/util.py")  # twice is harmless
    py.add("./app/util.py")
    assert res(py, "python", "app/main.py", "app", ("util",)) == ("app/util.py",)
    # Removing a whole package removes it as a source root too.
    py.remove("lib/pkg/__init__.py")
    py.remove("lib/pkg/thing.py")
    assert res(py, "python", "app/main.py", "pkg") == ()
    assert not py.is_dir("lib") and not py.dirs_with_suffix("pkg")


def test_remove_updates_packages_and_suffixes() -> None:
    files = workspace(JAVA, packages=JAVA_PACKAGES)
    files.remove("legacy/Odd.java")
    assert res(files, "java", "legacy/Other.java", "com.acme.legacy.Odd") == ()
    assert res(files, "java", "legacy/Other.java", "com.acme.legacy.*") == ()  # only itself
    files.add("legacy/Odd.java", "com.acme.legacy")
    assert res(files, "java", "legacy/Other.java", "com.acme.legacy.Odd") == ("legacy/Odd.java",)
    files.add("legacy/Odd.java", "com.acme.moved")  # re-declared
    assert res(files, "java", "legacy/Other.java", "com.acme.moved.Odd") == ("legacy/Odd.java",)


def test_configs_are_read_once_and_reread_after_add() -> None:
    calls: list[str] = []
    texts = {"web/tsconfig.json": TSCONFIG}

    def read(path: str) -> str | None:
        calls.append(path)
        return texts.get(path)

    files = WorkspaceFiles(JS, read=read)
    for _ in range(3):
        assert res(files, "tsx", "web/src/view.tsx", "@app/util") == ("web/src/util.ts",)
    assert calls.count("web/tsconfig.json") == 1
    assert all(normalize(p) == p and p for p in calls)  # workspace-relative, nothing else
    texts["web/tsconfig.json"] = '{"compilerOptions": {"paths": {"@lib/*": ["src/lib/*"]}}}'
    files.add("web/tsconfig.json")
    assert res(files, "tsx", "web/src/view.tsx", "@app/util") == ()
    assert res(files, "tsx", "web/src/view.tsx", "@lib/helpers") == ("web/src/lib/helpers.js",)


def test_config_changed_without_indexing_the_config() -> None:
    texts = {"app/tsconfig.json": '{"extends": "./tsconfig.base.json"}'}
    files = WorkspaceFiles(["app/src/x.ts", "app/src/log.ts"], read=texts.get)
    assert res(files, "typescript", "app/src/x.ts", "#/log") == ()
    texts["app/tsconfig.base.json"] = '{"compilerOptions": {"paths": {"#/*": ["src/*"]}}}'
    files.config_changed("app/tsconfig.base.json")
    assert res(files, "typescript", "app/src/x.ts", "#/log") == ("app/src/log.ts",)
    assert "app/tsconfig.base.json" not in files and len(files) == 2
    texts["app/tsconfig.base.json"] = "{}"
    files.add("app/tsconfig.base.json")  # an indexed config announces changes by add()
    assert res(files, "typescript", "app/src/x.ts", "#/log") == ()


def test_degenerate_inputs(py: WorkspaceFiles) -> None:
    assert res(py, "cobol", "app/main.py", "app") == ()
    assert res(py, "python", "app/main.py", "") == ()
    assert res(py, "python", "/etc/x.py", "app") == ()
    assert res(py, "python", "app/__init__.py", "app") == ()  # never the importing file itself
    assert WorkspaceFiles(["app/x.py"]).names_in("app") == {"x.py"}
    assert res(WorkspaceFiles(["go.mod", "a/a.go"]), "go", "a/a.go", "x/a") == ()  # no reader
    assert normalize("a/./b/../c") == "a/c" and normalize("../a") is None and normalize("") == ""


def test_results_are_capped() -> None:
    """A package import resolves to all of its files, up to a bound."""
    files = workspace(
        ["go.mod", *(f"big/f{i:03}.go" for i in range(300))], {"go.mod": "module m\n"}
    )
    found = res(files, "go", "main.go", "m/big")
    assert len(found) == MAX_TARGETS and found[0] == "big/f000.go"
    small = workspace(["go.mod", *(f"pkg/f{i:02}.go" for i in range(20))], {"go.mod": "module m\n"})
    assert len(res(small, "go", "main.go", "m/pkg")) == 20


# -- speed ----------------------------------------------------------------------------------


def test_resolution_is_fast_on_a_2000_file_workspace() -> None:
    paths = [
        f"{top}/mod{m}/sub{s}/file{f}.{ext}"
        for top, ext in (("pkg", "py"), ("web", "ts"), ("srv", "go"), ("java/com/acme", "java"))
        for m in range(5)
        for s in range(5)
        for f in range(20)
    ]
    paths += [f"pkg/mod{m}/__init__.py" for m in range(5)] + ["go.mod"]
    files = workspace(paths, {"go.mod": "module example.com/app\n"})
    assert len(files) > 2000
    cases = [
        ("python", "pkg/mod1/sub2/file3.py", ImportRef("pkg.mod3.sub4.file5")),
        ("python", "pkg/mod1/sub2/file3.py", ImportRef("pkg.mod3.sub4", ("file5", "x"))),
        ("python", "pkg/mod1/sub2/file3.py", ImportRef("file4", ("x",), level=1)),
        ("python", "pkg/mod1/sub2/file3.py", ImportRef("numpy")),
        ("typescript", "web/mod1/sub2/file3.ts", ImportRef("../sub3/file9")),
        ("typescript", "web/mod1/sub2/file3.ts", ImportRef("react")),
        ("go", "srv/mod1/sub2/file3.go", ImportRef("example.com/app/srv/mod4/sub0")),
        ("go", "srv/mod1/sub2/file3.go", ImportRef("fmt")),
        ("java", "java/com/acme/mod0/sub0/file0.java", ImportRef("com.acme.mod2.sub1.file7")),
        ("java", "java/com/acme/mod0/sub0/file0.java", ImportRef("java.util.List")),
    ]
    found = [resolve_import(ref, src, language, files) for language, src, ref in cases]
    assert [len(f) for f in found] == [1, 1, 1, 0, 1, 0, 20, 0, 1, 0]
    rounds = 200
    start = time.perf_counter()
    for _ in range(rounds):
        for language, src, ref in cases:
            resolve_import(ref, src, language, files)
    per_import = (time.perf_counter() - start) / (rounds * len(cases))
    print(f"{per_import * 1e6:.1f} us per import")
    assert per_import < 2e-4, f"{per_import * 1e6:.1f} us per import"
