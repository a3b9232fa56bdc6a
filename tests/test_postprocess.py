"""The post-processing pipeline: each step on its own, realistic generations end to end, and
properties that must hold for any input."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from starcoder_ls import postprocess as pp
from starcoder_ls.postprocess import Context, postprocess
from starcoder_ls.types import CompletionMode

SINGLE = CompletionMode.SINGLE_LINE
MULTI = CompletionMode.MULTI_LINE


def ctx(prefix: str = "", suffix: str = "", language: str | None = None) -> Context:
    return Context.of(prefix, suffix, language)


# -- special tokens ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("return x<|endoftext|>", "return x"),
        ("<fim_middle>return x", "return x"),
        ("<fim_middle><fim_middle>x = 1", "x = 1"),
        ("x = 1<fim_pad><fim_pad><fim_pad>", "x = 1"),
        ("x = 1\n<file_sep>src/other.py\nimport os", "x = 1\n"),
        ("a + b<|fim_pad|>", "a + b"),
        ("a + b <EOT>", "a + b"),
        ("<MID>a + b", "a + b"),
        ("a + b<｜fim▁end｜>garbage", "a + b"),
        ("a + b<｜end▁of▁sentence｜>", "a + b"),
        ("x = 1<|file_separator|>y", "x = 1"),
        ("<fim-middle>x = 1<|endoftext|>", "x = 1"),
        ("x = 1<|endoftext|><filename>b.py\nimport os", "x = 1"),
        ("<|endoftext|>", ""),
        # Legitimate angle brackets are code, not tokens.
        ("return <div>{x}</div>;", "return <div>{x}</div>;"),
        ("List<String> xs = new ArrayList<>();", "List<String> xs = new ArrayList<>();"),
        ("<s>old</s> <pre>x</pre>", "<s>old</s> <pre>x</pre>"),
        ("if a <b> c", "if a <b> c"),
        ("<fim_middle_x>", "<fim_middle_x>"),
    ],
)
def test_strip_special_tokens(raw: str, expected: str) -> None:
    assert pp.strip_special_tokens(raw) == expected


@pytest.mark.parametrize(
    ("raw", "stop", "expected"),
    [
        ("x = 1\n\ny = 2", ("\n\n",), "x = 1"),
        ("x = 1\ndef g():", ("\ndef ", "\nclass "), "x = 1"),
        ("a\nclass B\ndef c", ("\ndef ", "\nclass "), "a"),  # the earliest stop wins
        ("x = 1", ("", "\n"), "x = 1"),
        ("x = 1", (), "x = 1"),
    ],
)
def test_cut_at_stop(raw: str, stop: tuple[str, ...], expected: str) -> None:
    assert pp.cut_at_stop(raw, stop) == expected


# -- single line ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prefix", "suffix", "raw", "expected"),
    [
        ("x = ", "\n", "compute(a)\ny = 2", "compute(a)"),
        ("x = ", "\n", "\ny = 2", ""),  # model says the line is done
        ("def f():\n", "\n", "\n    return 1\n", "    return 1"),  # blank line: next content
        ("def f():\n    ", "\n", "\n\nreturn 1", "return 1"),
        ("x = ", "", "compute(a)\r\ny = 2", "compute(a)"),
        ("x = ", "", "no newline", "no newline"),
    ],
)
def test_first_line(prefix: str, suffix: str, raw: str, expected: str) -> None:
    assert pp.first_line(raw, ctx(prefix, suffix)) == expected


# -- repetition ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("x = 1\nprint(x)\nprint(x)\nprint(x)\nprint(x)", "x = 1\nprint(x)"),
        ("a()\nb()\na()\nb()\na()\nb()", "a()\nb()"),
        ("a()\nb()\na()\nb()\na()\nb", "a()\nb()"),  # last copy cut by the token limit
        ("print(x)\nprint(x)\nprint(x", "print(x)"),
        ("x = 1\nprint(x)\nprint(x)", "x = 1\nprint(x)\nprint(x)"),  # twice is fine
        ("}\n}\n\n\n", "}\n}\n\n\n"),  # blank lines are not a loop
        ("x = foo(bar(foo(bar(foo(bar(foo(bar(foo(bar(fo", "x = foo(bar("),
        ("self.a = self.a = self.a = self.a = self.a = ", "self.a = "),
        (
            "zeros = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]",
            "zeros = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]",
        ),
        ('key = "xxxxxxxxxxxxxxxxxxxxxxxx"', 'key = "xxxxxxxxxxxxxxxxxxxxxxxx"'),
        ("# ==================================", "# =================================="),
    ],
)
def test_drop_repetition(raw: str, expected: str) -> None:
    assert pp.drop_repetition(raw) == expected


def test_a_loop_that_starts_at_the_cursor_counts_the_typed_indentation() -> None:
    doc = '"""Return the mean."""'
    raw = f"{doc}\n    {doc}\n    {doc}\n    {doc}"
    assert pp.drop_repetition(raw, "    ") == doc


# -- indentation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prefix", "raw", "expected"),
    [
        ("def f():\n", "    return 1", "    return 1"),  # column 0: the model's indentation
        ("def f():\n    ", "    return 1", "return 1"),  # already typed: not twice
        ("    if x:\n        ", "    return 1", "return 1"),
        ("    if x:\n    ", "    return 1", "    return 1"),  # one level deeper is right
        ("def f():\n    x = 1\n    ", "  y = 2", "y = 2"),
        ("def f():\n    x = ", " 1", " 1"),  # not indentation
        ("function f() {\n  a();\n  ", "  b();", "b();"),
    ],
)
def test_dedup_indentation(prefix: str, raw: str, expected: str) -> None:
    assert pp.dedup_indentation(raw, ctx(prefix)) == expected


# -- scope ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prefix", "suffix", "raw", "expected", "language"),
    [
        (
            "class A:\n    def f(self):\n",
            "",
            "        return 1\n\n    def g(self):\n        pass\n\nx = A()",
            "        return 1\n",
            "python",
        ),
        (
            "def f(x):\n    if x:\n",
            "",
            "        return 1\n    return 2\n\nprint(f(1))",
            "        return 1",
            "python",
        ),
        (  # the line that closes the block is kept when the code below lacks it
            "function f() {\n  ",
            "",
            "return 1;\n}\n\nfunction g() {}",
            "return 1;\n}",
            "javascript",
        ),
        (  # ... and dropped when the code below already closes it
            "function f() {\n  ",
            "\n}\n",
            "return 1;\n}\n\nfunction g() {}",
            "return 1;",
            "javascript",
        ),
        (  # the block is that of the cursor's line
            "def f(x):\n    if x:",
            "",
            "\n        return 1\n    return 2\n\nprint(f(1))",
            "\n        return 1\n    return 2\n",  # the blank line goes later
            "python",
        ),
        (  # a closer on a line of its own that closes the completion's own bracket
            "function f() {\n  ",
            "\n}\n",
            "foo({\n  a: 1,\n});\nbar();\n}",
            "foo({\n  a: 1,\n});",
            "javascript",
        ),
        (  # a bracket closing beyond the block, on a line with code
            "int f(void) {\n    ",
            "",
            "int x = 1;\n    return x; }\nint g(void) { return 2; }",
            "int x = 1;\n    return x;",
            "c",
        ),
        (  # braces inside strings and comments do not count
            "fn main() {\n    ",
            "",
            'let s = "}";\n    let c = \'}\'; // }\n    println!("{}", s);\n}',
            'let s = "}";\n    let c = \'}\'; // }\n    println!("{}", s);\n}',
            "rust",
        ),
        (  # Rust lifetimes are not quotes
            "impl<'a> P<'a> {\n    ",
            "\n}\n",
            "fn get(&'a self) -> &'a str {\n        self.s\n    }\n}",
            "fn get(&'a self) -> &'a str {\n        self.s\n    }",
            "rust",
        ),
        (
            "func main() {\n\t",
            "\n}\n",
            'fmt.Println("hi")\n\tos.Exit(0)\n}\n\nfunc other() {}',
            'fmt.Println("hi")\n\tos.Exit(0)',
            "go",
        ),
        ("x = 1\n", "", "y = 2\nz = 3", "y = 2\nz = 3", "python"),  # top level: no scope end
    ],
)
def test_limit_scope(prefix: str, suffix: str, raw: str, expected: str, language: str) -> None:
    assert pp.limit_scope(raw, ctx(prefix, suffix, language)) == expected


_EMPTY_BODY = 'def mean(values):\n    """Return the mean."""\n    '
_NEXT_DEF = "\n\ndef stdev(values):\n    return 0\n"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # The model closed the empty body and began another definition: nothing to insert.
        ("\n\ndef stdev_mean(values):\n    ...", ""),
        # Blank lines before the body's code: the code starts on the cursor's line.
        ("\n    return sum(values) / len(values)\n", "return sum(values) / len(values)"),
        ("\n\n    total = sum(values)\n    return total\n\ndef g():\n    pass",
         "total = sum(values)\n    return total"),
        ("return sum(values) / len(values)\n\n\ndef g():\n    x", "return sum(values) / len(values)"),
    ],
)  # fmt: skip
def test_empty_body_completion_starts_inside_the_body(raw: str, expected: str) -> None:
    out = postprocess(
        raw, prefix=_EMPTY_BODY, suffix=_NEXT_DEF, mode=CompletionMode.MULTI_LINE, language="python"
    )
    assert out == expected


def test_limit_scope_cuts_at_a_dedent_after_leading_blank_lines() -> None:
    # The current line has code after the cursor, so the blank lines are kept; the dedent to
    # column 0 still ends the completion.
    c = ctx("def f():\n    ", "x = 1\n", "python")
    assert pp.limit_scope("\n\n    y = 2\ndef g():\n    pass", c) == "\n\n    y = 2"


# -- the code after the cursor -------------------------------------------------------------


@pytest.mark.parametrize(
    ("prefix", "suffix", "raw", "expected"),
    [
        ("def f(x):\n    ", "\n    return y\n", "y = x * 2\n    return y", "y = x * 2"),
        (  # runs into the suffix and goes on differently
            "def f(x):\n    ",
            "\n    return y\n\nprint(f(2))\n",
            "y = x * 2\n    return y\n\nprint(f(1))",
            "y = x * 2",
        ),
        ("def f(x):\n", "\n    return x\n", "    return x", ""),  # exactly the next line
        (  # a short common line is no proof of running into the suffix
            "def f(x):\n    ",
            "\n    pass\n",
            "if x:\n        pass\n    pass\n    y = 1",
            "if x:\n        pass\n    pass\n    y = 1",
        ),
        ("x = 1\n", "\nz = 3\n", "y = 2", "y = 2"),
    ],
)
def test_dedup_suffix_lines(prefix: str, suffix: str, raw: str, expected: str) -> None:
    assert pp.dedup_suffix_lines(raw, ctx(prefix, suffix)) == expected


@pytest.mark.parametrize(
    ("prefix", "suffix", "raw", "expected"),
    [
        ("print(", ")\n", "x)", "x"),
        ("def f(", "):\n", "a, b):", "a, b"),
        ("def f(", "):\n", "a, b):\n    return a + b", "a, b"),  # first line ends with it
        ('print("hello ', '")\n', 'world")', "world"),
        ("x = ", ")\n", "foo()", "foo()"),  # its own bracket: the rest closes something else
        ("foo(", ")\n", "\n    a,\n    b,\n)", "\n    a,\n    b,\n"),
        ("int x = ", ";\n", "0;", "0"),
        ("if (x > 0)", " {\n", " {", " "),
    ],
)
def test_dedup_rest_of_line(prefix: str, suffix: str, raw: str, expected: str) -> None:
    assert pp.dedup_rest_of_line(raw, ctx(prefix, suffix)) == expected


@pytest.mark.parametrize(
    ("prefix", "suffix", "raw", "expected"),
    [
        ("print(foo(", "))\n", "x))", "x"),
        ("print(foo(", ")\n", "x), y)", "x), y"),
        ("foo(", "\n", "a))", "a)"),  # the line opened one, not two
        ("    x = 1", "\n", "; }", ";"),  # closes what the line never opened
        ("    return x", "\n", ")", ""),
        ("arr[", "]\n", "i]", "i"),
        ("foo(", "\n", "a, [b, c])", "a, [b, c])"),
        ("x = ", "\n", 'f(")")', 'f(")")'),  # in a string
        ("function f() {\n  g(function() {\n    x();\n  ", "\n}\n", "});", "});"),
        ("function f() {\n  x();\n", "}\n", "}", ""),  # the code below closes it already
        ("function f() {\n  x();\n  ", "\n}\n", "}", ""),  # ... at a lower indentation
        ("function f() {\n  if (a) {\n    x();\n  ", "\n}\n", "}", "}"),  # inner block open
    ],
)
def test_balance_brackets(prefix: str, suffix: str, raw: str, expected: str) -> None:
    assert pp.balance_brackets(raw, ctx(prefix, suffix, "javascript")) == expected


@pytest.mark.parametrize(
    ("suffix", "raw", "expected"),
    [
        ("\n", "return x\n\n  \n", "return x"),
        ("\n", "\n    return x\n", "\n    return x"),
        ("}\n", "\n  return 1;\n\n", "\n  return 1;\n"),  # the rest of the line gets a line
        ("\n", "return x", "return x"),
    ],
)
def test_drop_trailing_blank_lines(suffix: str, raw: str, expected: str) -> None:
    assert pp.drop_trailing_blank_lines(raw, ctx("x", suffix)) == expected


# -- syntax check --------------------------------------------------------------------------


def test_syntax_check_rejects_a_completion_that_breaks_the_file() -> None:
    prefix, suffix = "def f(x):\n    return ", "\n\nprint(f(1))\n"
    assert postprocess("x + 1", prefix=prefix, suffix=suffix, mode=SINGLE, language="python",
                       check_syntax=True) == "x + 1"  # fmt: skip
    assert pp.adds_syntax_errors(prefix, "x +* (1", suffix, "python")
    assert postprocess("x +* (1", prefix=prefix, suffix=suffix, mode=SINGLE, language="python",
                       check_syntax=True) == ""  # fmt: skip
    assert postprocess("x +* (1", prefix=prefix, suffix=suffix, mode=SINGLE, language="python",
                       check_syntax=False) == "x +* (1"  # fmt: skip


@pytest.mark.parametrize(
    ("language", "prefix", "good", "bad", "suffix"),
    [
        ("javascript", "function f(a) {\n  return ", "a * 2;", "a * ;;)", "\n}\n"),
        ("typescript", "function f(a: number): number {\n  return ", "a * 2;", "a *: 2", "\n}\n"),
        ("go", "package m\n\nfunc f(a int) int {\n\treturn ", "a * 2", "a * * {", "\n}\n"),
        ("rust", "fn f(a: i32) -> i32 {\n    ", "a * 2", "let let = ;", "\n}\n"),
        ("c", "int f(int a) {\n    return ", "a * 2;", "a * * ;;(", "\n}\n"),
        ("cpp", "int f(int a) {\n    return ", "a * 2;", "a * * ;;(", "\n}\n"),
        ("java", "class A {\n  int f(int a) {\n    return ", "a * 2;", "a * * (", "\n  }\n}\n"),
    ],
)
def test_syntax_check_languages(
    language: str, prefix: str, good: str, bad: str, suffix: str
) -> None:
    assert not pp.adds_syntax_errors(prefix, good, suffix, language)
    assert pp.adds_syntax_errors(prefix, bad, suffix, language)


def test_syntax_check_on_a_large_file_looks_near_the_cursor() -> None:
    body = "".join(f"def f{i}(x):\n    return x + {i}\n\n" for i in range(3000))
    prefix, suffix = body + "def g(x):\n    return ", "\n\n" + body
    assert len(prefix) > 60_000
    assert not pp.adds_syntax_errors(prefix, "x * 2", suffix, "python")
    assert pp.adds_syntax_errors(prefix, "x +* (1", suffix, "python")


def test_syntax_check_fixes_are_welcome_and_unknown_languages_pass() -> None:
    # The file is broken without the completion; completing it makes it parse.
    assert not pp.adds_syntax_errors("def f(x", "):", "\n    return x\n", "python")
    assert not pp.adds_syntax_errors("a b c", " ((( ", "", "cobol-unknown")
    assert not pp.adds_syntax_errors("a b c", " ((( ", "", None)


# -- whole pipeline, realistic generations -------------------------------------------------

PIPELINE = [
    pytest.param(  # StarCoder ends the middle, then starts another file
        "python", MULTI,
        "def fib(n):\n    ",
        "\n\nif __name__ == '__main__':\n    print(fib(10))\n",
        "if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n<|endoftext|>"
        "<file_sep>tests/test_fib.py\nimport fib\n",
        "if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)",
        id="python-body",
    ),
    pytest.param(  # the model goes on past the function into unrelated code
        "python", MULTI,
        "import os\n\ndef read(path):\n",
        "",
        "    with open(path) as f:\n        return f.read()\n\n\ndef write(path, data):\n"
        "    with open(path, 'w') as f:\n        f.write(data)\n",
        "    with open(path) as f:\n        return f.read()",
        id="python-scope",
    ),
    pytest.param(
        "python", SINGLE,
        "for i in range(",
        "):\n    print(i)\n",
        "len(items)):\n    print(i)",
        "len(items)",
        id="python-rest-of-line",
    ),
    pytest.param(
        "python", MULTI,
        "def area(r):\n    ",
        "\n    return result\n",
        "result = 3.14159 * r ** 2\n    return result\n",
        "result = 3.14159 * r ** 2",
        id="python-suffix-repeat",
    ),
    pytest.param(
        "python", MULTI,
        "def f():\n    ",
        "\n",
        "    log('x')\n    log('x')\n    log('x')\n    log('x')\n    log('x')",
        "log('x')",
        id="python-loop-and-indent",
    ),
    pytest.param(
        "javascript", MULTI,
        "const add = (a, b) => {\n  ",
        "\n};\n\nmodule.exports = add;\n",
        "return a + b;\n};\n\nmodule.exports = add;\n<|endoftext|>",
        "return a + b;",
        id="js-arrow",
    ),
    pytest.param(
        "javascript", SINGLE,
        "const el = document.querySelector(",
        ");\n",
        "'#app');",
        "'#app'",
        id="js-call-rest",
    ),
    pytest.param(
        "javascript", MULTI,
        "function render(items) {\n  return (\n    <ul>\n      ",
        "\n    </ul>\n  );\n}\n",
        "{items.map((item) => (\n        <li key={item.id}>{item.name}</li>\n      ))}\n"
        "    </ul>\n  );\n}",
        "{items.map((item) => (\n        <li key={item.id}>{item.name}</li>\n      ))}",
        id="jsx-not-tokens",
    ),
    pytest.param(
        "go", MULTI,
        "package main\n\nfunc sum(xs []int) int {\n\t",
        "\n}\n",
        "total := 0\n\tfor _, x := range xs {\n\t\ttotal += x\n\t}\n\treturn total\n}\n\n"
        "func main() {\n}",
        "total := 0\n\tfor _, x := range xs {\n\t\ttotal += x\n\t}\n\treturn total",
        id="go-body",
    ),
    pytest.param(
        "go", SINGLE,
        "func main() {\n\tfmt.Println(",
        ")\n}\n",
        '"hello, world")',
        '"hello, world"',
        id="go-call",
    ),
    pytest.param(
        "rust", MULTI,
        "fn parse(s: &str) -> Option<u32> {\n    ",
        "\n}\n",
        "let v: Vec<&str> = s.split(',').collect();\n    v.first()?.parse().ok()\n}\n\n"
        "fn main() {}\n",
        "let v: Vec<&str> = s.split(',').collect();\n    v.first()?.parse().ok()",
        id="rust-generics",
    ),
    pytest.param(
        "rust", SINGLE,
        "    let name = String::from(",
        ");\n",
        '"abc");<fim_pad><fim_pad>',
        '"abc"',
        id="rust-rest-and-pad",
    ),
    pytest.param(
        "c", MULTI,
        "#include <stdio.h>\n\nint main(void) {\n    ",
        "",
        'printf("hello\\n");\n    return 0;\n}\n\nint helper(void) {\n    return 1;\n}',
        'printf("hello\\n");\n    return 0;\n}',
        id="c-close-at-eof",
    ),
    pytest.param(
        "c", SINGLE,
        "int max(int a, int b) {\n    return ",
        "\n}\n",
        "a > b ? a : b; }",
        "a > b ? a : b;",
        id="c-extra-brace",
    ),
    pytest.param(
        "python", SINGLE, "x = compute(", ")\n", "\n    a, b)", "", id="newline-first"
    ),
    pytest.param("python", MULTI, "x = 1\n", "", "   \n\t\n", "", id="whitespace-only"),
    pytest.param("python", CompletionMode.NONE, "x = ", "", "1", "", id="mode-none"),
]  # fmt: skip


@pytest.mark.parametrize(("language", "mode", "prefix", "suffix", "raw", "expected"), PIPELINE)
def test_pipeline(
    language: str, mode: CompletionMode, prefix: str, suffix: str, raw: str, expected: str
) -> None:
    stop = ("<|endoftext|>", "<file_sep>", "<fim_pad>")
    out = postprocess(raw, prefix=prefix, suffix=suffix, mode=mode, stop=stop, language=language)
    assert out == expected
    again = postprocess(out, prefix=prefix, suffix=suffix, mode=mode, stop=stop, language=language)
    assert again == out
    if out:
        checked = postprocess(
            raw, prefix=prefix, suffix=suffix, mode=mode, language=language, check_syntax=True
        )
        assert checked == out, "a cleaned realistic completion must not add parse errors"


# -- properties ----------------------------------------------------------------------------

_CODEISH = st.lists(
    st.sampled_from(
        [
            *"abcxyz_019 \t\n\n\n()[]{}:;,.=+\"'#/`<>|",
            *("<|endoftext|>", "<fim_pad>", "<EOT>", "    ", "def ", "return ", "\r\n", "é", "😀"),
        ]
    ),
    max_size=60,
).map("".join)
_TEXT = st.one_of(st.text(max_size=80), _CODEISH)
_LANGUAGES = st.sampled_from([None, "python", "javascript", "rust", "go", "c", "lua", "ruby"])
_MODES = st.sampled_from([SINGLE, MULTI])
_STOPS = st.lists(st.sampled_from(["\n\n", "<file_sep>", "\ndef ", "", "x"]), max_size=2)
_PROPS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_PROPS
@given(raw=_TEXT, prefix=_TEXT, suffix=_TEXT, mode=_MODES, language=_LANGUAGES, stop=_STOPS)
def test_properties(
    raw: str, prefix: str, suffix: str, mode: CompletionMode, language: str | None,
    stop: list[str],
) -> None:  # fmt: skip
    out = postprocess(raw, prefix=prefix, suffix=suffix, mode=mode, stop=stop, language=language)
    # Only ever a piece of what the model wrote: nothing invented, nothing reordered.
    assert out in raw
    assert out == "" or out.strip()
    if mode == SINGLE:
        assert "\n" not in out and "\r" not in out
    again = postprocess(out, prefix=prefix, suffix=suffix, mode=mode, stop=stop, language=language)
    assert again == out


@settings(max_examples=60, deadline=None)
@given(raw=_CODEISH, prefix=_CODEISH, suffix=_CODEISH)
def test_properties_with_syntax_check(raw: str, prefix: str, suffix: str) -> None:
    out = postprocess(
        raw, prefix=prefix, suffix=suffix, mode=MULTI, language="python", check_syntax=True
    )
    assert out in raw
    again = postprocess(
        out, prefix=prefix, suffix=suffix, mode=MULTI, language="python", check_syntax=True
    )
    assert again == out


def test_left_to_right_completions_end_at_the_next_line_below_however_short() -> None:
    prefix = "def area(r):\n    "
    suffix = "\n    x += 1\n    z = 0\n"
    raw = "x = r * r\n    x += 1\n    y = x\n    return y"
    kw = {
        "prefix": prefix,
        "suffix": suffix,
        "mode": CompletionMode.MULTI_LINE,
        "language": "python",
    }
    # A FIM model saw the suffix; a short line is no proof that it is rewriting it.
    assert postprocess(raw, **kw) == raw
    # A left-to-right model never saw it: reaching the line below ends the completion.
    assert postprocess(raw, left_to_right=True, **kw) == "x = r * r"
