"""Fill-in-the-middle prompt formats, one per model family.

A model only infills well when the prompt has exactly the shape of its training samples: the same
sentinel spellings, the same newlines after file paths, the same place for repository metadata.
Each family below names where its format is documented; the bundled model's format is read off
the training code itself (``starcoder_ls.recipe.fim``), which is the only ground truth there is.

A prompt is ``outer + FIM(inner + prefix, suffix)``: ``outer`` is what comes before the prefix
sentinel (repository header and other files, for families trained on repository-level samples),
``inner`` is what starts the prefix text (a ``<filename>`` header, other files as comments). In
PSM mode the FIM part is ``P inner prefix S suffix M``; in SPM mode (bigcode's variant, the only one
the families here were trained with) it is ``P S suffix M inner prefix`` and the model goes on
with the middle after the prefix.

Models without FIM sentinels (most small general models) get the ``left-to-right`` family: the
prompt is the prefix alone, and the suffix only steers post-processing (the completion stops
where it reaches the code below the cursor).

Cross-file context (``FimInput.extra``) is rendered as extra files of the repository for families
with a repository format, and as line comments at the top of the prefix, under a ``Path:`` line,
for the others, so the code of the current file stays valid code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from starcoder_ls.prompt import tokens as bundled_tokens
from starcoder_ls.types import FimInput, Segment

PSM = "psm"
SPM = "spm"
AUTO = "auto"
MODES = (PSM, SPM)


@dataclass(frozen=True)
class Template:
    """The sentinels and layout of one family."""

    family: str
    prefix: str
    suffix: str
    middle: str
    stop: tuple[str, ...]
    """Stop strings: end of text, FIM pad, the start of another file, stray sentinels."""
    layout: str
    """How metadata and other files are placed: ``plain`` (comments only), ``ltr`` (comments
    only, and no suffix: left-to-right), ``filename``
    (StarCoder's ``<filename>`` header), ``path-comments`` (DeepSeek-Coder's ``# path`` lines),
    ``starcoder2``, ``qwen``, ``bundled`` (repository formats)."""
    spm: bool = False
    """Trained with suffix-prefix-middle samples too (bigcode's variant), so SPM may be used."""
    spm_first: bool = False
    """``fimMode: auto`` uses SPM: trained on it as often as on PSM, as documented. In SPM the
    prefix comes last, so text typed at the cursor extends the prompt and the model's KV cache
    keeps all the rest; in PSM the suffix after it is evaluated again on every keystroke."""
    lead: str = ""
    """Text the tokenizer put between the prefix sentinel and the prefix in training
    (CodeLlama's SentencePiece space)."""
    repo_name: str = ""
    file_sep: str = ""
    file_name: str = ""
    source: str = ""
    """Where the format is documented."""

    @property
    def repo_format(self) -> bool:
        """Other files go in as files of the repository (not as comments)."""
        return self.layout in ("starcoder2", "qwen", "bundled", "path-comments", "ltr-repo")

    @property
    def file_header(self) -> bool:
        """The current file's path can be given to the model."""
        return self.layout in (
            "filename",
            "starcoder2",
            "qwen",
            "bundled",
            "path-comments",
            "ltr-repo",
        )

    @property
    def special_tokens(self) -> tuple[str, ...]:
        """Every special spelling this family's prompts and outputs may contain."""
        spellings = (
            self.prefix,
            self.suffix,
            self.middle,
            self.repo_name,
            self.file_sep,
            self.file_name,
            *self.stop,
        )
        return tuple(dict.fromkeys(s.strip() for s in spellings if s.strip()))


_BIGCODE_FIM = ("<fim_prefix>", "<fim_suffix>", "<fim_middle>")
LEFT_TO_RIGHT = "left-to-right"
LEFT_TO_RIGHT_REPO = "left-to-right-repo"

FAMILIES: dict[str, Template] = {
    # StarCoder / StarCoderBase: arXiv:2305.06161 section 5.1 and the bigcode/starcoder model card.
    # Metadata ("<reponame>r<filename>path<gh_stars>n\n", each part optional) is part of the file's
    # text, and bigcode's Megatron-LM applies FIM to the whole document afterwards (FIM rate 0.5,
    # SPM rate 0.5), so the header sits at the start of the prefix, inside the FIM part.
    "starcoder": Template(
        family="starcoder",
        prefix="<fim_prefix>",
        suffix="<fim_suffix>",
        middle="<fim_middle>",
        stop=("<|endoftext|>", "<fim_pad>", "<filename>", *_BIGCODE_FIM),
        layout="filename",
        spm=True,
        spm_first=True,
        file_name="<filename>",
        source="arXiv:2305.06161 (StarCoder) sec. 5.1; huggingface.co/bigcode/starcoder",
    ),
    # StarCoder2: arXiv:2402.19173 section 5 ("Data formatting"). Repository-context samples are
    # "<repo_name>r<file_sep>path0\ncode0<file_sep><fim_prefix>path1\npre<fim_suffix>suf
    # <fim_middle>mid"; the only newline added is the one after each path. With no metadata at all
    # the plain PSM form below is what the model card and bigcode's evaluation harness use.
    "starcoder2": Template(
        family="starcoder2",
        prefix="<fim_prefix>",
        suffix="<fim_suffix>",
        middle="<fim_middle>",
        stop=("<|endoftext|>", "<fim_pad>", "<file_sep>", "<repo_name>", *_BIGCODE_FIM),
        layout="starcoder2",
        repo_name="<repo_name>",
        file_sep="<file_sep>",
        source="arXiv:2402.19173 (StarCoder2) sec. 5; huggingface.co/bigcode/starcoder2-15b",
    ),
    # SantaCoder: huggingface.co/bigcode/santacoder model card ("<fim-prefix>pre<fim-suffix>suf
    # <fim-middle>", hyphenated); trained with bigcode's Megatron-LM FIM, PSM and SPM. No metadata
    # tokens, so paths and other files can only be comments.
    "santacoder": Template(
        family="santacoder",
        prefix="<fim-prefix>",
        suffix="<fim-suffix>",
        middle="<fim-middle>",
        stop=("<|endoftext|>", "<fim-pad>", "<fim-prefix>", "<fim-suffix>", "<fim-middle>"),
        layout="plain",
        spm=True,
        spm_first=True,
        source="huggingface.co/bigcode/santacoder; arXiv:2301.03988",
    ),
    # CodeLlama: github.com/meta-llama/codellama llama/generation.py infilling_prompt_tokens:
    # PSM "<PRE> {pre} <SUF>{suf} <MID>", SPM "<PRE> <SUF>{suf} <MID> {pre}" (the spaces are the
    # "▁" of the "▁<SUF>"/"▁<MID>" tokens and SentencePiece's leading space on the prefix); the
    # middle ends with "<EOT>". Same as Ollama's codellama template. No repository format.
    "codellama": Template(
        family="codellama",
        prefix="<PRE>",
        suffix=" <SUF>",
        middle=" <MID>",
        stop=("<EOT>", "</s>"),
        layout="plain",
        spm=True,
        spm_first=True,
        lead=" ",
        source="github.com/meta-llama/codellama llama/generation.py; arXiv:2308.12950",
    ),
    # DeepSeek-Coder: github.com/deepseek-ai/DeepSeek-Coder README, "Code Insertion"
    # ("<｜fim▁begin｜>pre<｜fim▁hole｜>suf<｜fim▁end｜>", full-width bars and U+2581) and
    # "Repository Level Code Completion" (each file after a "# path" comment line). PSM only.
    "deepseek-coder": Template(
        family="deepseek-coder",
        prefix="<｜fim▁begin｜>",
        suffix="<｜fim▁hole｜>",
        middle="<｜fim▁end｜>",
        stop=(
            "<｜end▁of▁sentence｜>",
            "<|EOT|>",
            "<｜fim▁begin｜>",
            "<｜fim▁hole｜>",
            "<｜fim▁end｜>",
        ),
        layout="path-comments",
        source="github.com/deepseek-ai/DeepSeek-Coder README sec. 4; arXiv:2401.14196",
    ),
    # Qwen2.5-Coder: github.com/QwenLM/Qwen2.5-Coder examples/Qwen2.5-Coder.md, "Repository Level
    # Code Infilling": "<|repo_name|>r\n<|file_sep|>path1\ncontent1\n<|file_sep|>path2\n
    # <|fim_prefix|>pre<|fim_suffix|>suf<|fim_middle|>"; stop ids listed there. PSM only.
    "qwen2.5-coder": Template(
        family="qwen2.5-coder",
        prefix="<|fim_prefix|>",
        suffix="<|fim_suffix|>",
        middle="<|fim_middle|>",
        stop=(
            "<|endoftext|>",
            "<|fim_pad|>",
            "<|file_sep|>",
            "<|repo_name|>",
            "<|fim_prefix|>",
            "<|fim_suffix|>",
            "<|fim_middle|>",
            "<|im_end|>",
        ),
        layout="qwen",
        repo_name="<|repo_name|>",
        file_sep="<|file_sep|>",
        source="github.com/QwenLM/Qwen2.5-Coder examples/Qwen2.5-Coder.md; arXiv:2409.12186",
    ),
    # CodeGemma: ai.google.dev/gemma/docs/codegemma/prompt-structure ("<|fim_prefix|>pre
    # <|fim_suffix|>suf<|fim_middle|>", no extra spaces; stop at "<|file_separator|>"). The file
    # separator's multi-file layout (paths) is not documented, so other files are comments.
    "codegemma": Template(
        family="codegemma",
        prefix="<|fim_prefix|>",
        suffix="<|fim_suffix|>",
        middle="<|fim_middle|>",
        stop=("<|file_separator|>", "<eos>", "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"),
        layout="plain",
        source="ai.google.dev/gemma/docs/codegemma/prompt-structure",
    ),
    # The bundled model: exactly the documents of starcoder_ls.recipe.fim (document_pieces,
    # repo_pieces): "[<file_sep>path\n]" + FIM for one file; "<repo_name>r" + "<file_sep>p\ncode"
    # per other file + "<file_sep>path\n" + FIM with repository context. PSM and SPM (spm_rate).
    "starcoder-ls": Template(
        family="starcoder-ls",
        prefix=bundled_tokens.FIM_PREFIX,
        suffix=bundled_tokens.FIM_SUFFIX,
        middle=bundled_tokens.FIM_MIDDLE,
        stop=(*bundled_tokens.STOP_TOKENS, bundled_tokens.REPO_NAME, *_BIGCODE_FIM),
        layout="bundled",
        spm=True,
        repo_name=bundled_tokens.REPO_NAME,
        file_sep=bundled_tokens.FILE_SEP,
        source="starcoder_ls/recipe/fim.py; models/starcoder-ls-tiny/MODEL_CARD.md",
    ),
    # Models trained without FIM: the prompt is the code before the cursor, other files as
    # comments above it; the model's own end-of-text tokens (by id) end the generation.
    LEFT_TO_RIGHT: Template(
        family=LEFT_TO_RIGHT,
        prefix="",
        suffix="",
        middle="",
        stop=(),
        layout="ltr",
        source="no FIM format: plain continuation of the prefix",
    ),
    # The same, for vocabularies that keep StarCoder2's repository tokens without FIM ones
    # (SmolLM2): other files and the current file's path as a repository document,
    # "<repo_name>r<file_sep>path\ncode...<file_sep>path\nprefix".
    LEFT_TO_RIGHT_REPO: Template(
        family=LEFT_TO_RIGHT_REPO,
        prefix="",
        suffix="",
        middle="",
        stop=("<file_sep>", "<repo_name>"),
        layout="ltr-repo",
        repo_name="<repo_name>",
        file_sep="<file_sep>",
        source="StarCoder2's repository layout (arXiv:2402.19173 sec. 5) without FIM",
    ),
}


def left_to_right(family: str) -> bool:
    """The family's prompts hold no suffix (post-processing must stop at it instead)."""
    template = FAMILIES.get(family)
    return template is not None and template.layout in ("ltr", "ltr-repo")


def get_template(family: str) -> Template:
    try:
        return FAMILIES[family]
    except KeyError:
        raise ValueError(
            f"unknown prompt family {family!r}; known: {', '.join(FAMILIES)}"
        ) from None


def fim_order(family: str, mode: str) -> str:
    """The FIM order for a ``fimMode`` setting: ``auto`` is SPM for families trained on it as
    often as on PSM (StarCoder, SantaCoder, CodeLlama), PSM otherwise (the bundled model saw
    SPM in a quarter of its samples, and completes held-out lines worse with it: edit
    similarity 0.083 against 0.115 on 400 lines); ``spm`` applies to any family trained with
    SPM at all; everything else gets PSM."""
    template = FAMILIES.get(family)
    if template is None or not template.spm:
        return PSM
    if mode == AUTO:
        return SPM if template.spm_first else PSM
    return mode


def spm_families() -> tuple[str, ...]:
    """Families trained with SPM samples: starcoder, santacoder, codellama, starcoder-ls."""
    return tuple(name for name, t in FAMILIES.items() if t.spm)


# Line comment (or block delimiters) per LSP languageId, for files written as comments.
_LINE_COMMENTS: dict[str, str] = {
    "#": "python ruby shellscript bash sh zsh fish perl r yaml toml dockerfile makefile "
    "powershell elixir julia nim cmake coffeescript crystal gdscript tcl nix starlark terraform",
    "//": "c cpp csharp java javascript javascriptreact typescript typescriptreact go rust swift "
    "kotlin scala dart php groovy objective-c objective-cpp zig solidity proto glsl hlsl cuda "
    "verilog systemverilog fsharp jsonc scss less d v",
    "--": "lua sql haskell elm ada vhdl purescript plsql",
    ";": "clojure lisp scheme racket commonlisp asm ini",
    "%": "erlang latex tex matlab prolog",
    '"': "vim",
}
_BLOCK_COMMENTS: dict[tuple[str, str], str] = {
    ("<!--", "-->"): "html xml markdown vue svelte",
    ("/*", "*/"): "css",
    ("(*", "*)"): "ocaml",
}
_COMMENT_OF: dict[str, tuple[str, str]] = {
    **{lang: (mark, "") for mark, langs in _LINE_COMMENTS.items() for lang in langs.split()},
    **{lang: style for style, langs in _BLOCK_COMMENTS.items() for lang in langs.split()},
}
_EXTENSION_TABLE = (
    "py:python pyi:python rb:ruby sh:shellscript bash:shellscript pl:perl r:r yml:yaml "
    "yaml:yaml toml:toml ex:elixir exs:elixir jl:julia c:c h:c cc:cpp cpp:cpp cxx:cpp "
    "hpp:cpp hh:cpp cs:csharp java:java js:javascript mjs:javascript cjs:javascript "
    "jsx:javascriptreact ts:typescript mts:typescript tsx:typescriptreact go:go rs:rust "
    "swift:swift kt:kotlin kts:kotlin scala:scala dart:dart php:php m:objective-c zig:zig "
    "sol:solidity proto:proto cu:cuda lua:lua sql:sql hs:haskell elm:elm clj:clojure "
    "scm:scheme rkt:racket erl:erlang tex:latex vim:vim html:html htm:html xml:xml "
    "md:markdown vue:vue svelte:svelte css:css scss:scss less:less ml:ocaml tf:terraform "
    "nix:nix"
)
_EXTENSIONS: dict[str, str] = dict(item.split(":", 1) for item in _EXTENSION_TABLE.split())


def comment_style(language: str | None, path: str | None = None) -> tuple[str, str]:
    """(start, end) of a comment in the current file; ``#`` when the language is unknown."""
    lang = (language or "").lower()
    if lang not in _COMMENT_OF and path:
        base = os.path.basename(path)
        lang = "makefile" if base == "Makefile" else "dockerfile" if base == "Dockerfile" else ""
        lang = lang or _EXTENSIONS.get(os.path.splitext(path)[1].lower().lstrip("."), "")
    return _COMMENT_OF.get(lang, ("#", ""))


def _with_newline(text: str) -> str:
    return text if text.endswith("\n") else text + "\n"


def _commented(seg: Segment, style: tuple[str, str]) -> str:
    start, end = style
    lines = [f"Path: {seg.path}", *seg.text.rstrip("\n").split("\n")]
    if end:
        body = "\n".join(lines).replace(end, end[0] + " " + end[1:])
        return f"{start} {body}\n{end}\n"
    return "".join(f"{start} {line}\n" if line else f"{start}\n" for line in lines)


def extra_block(template: Template, seg: Segment, fim: FimInput) -> str:
    """One other file as it appears in ``template``'s prompts ("" for an empty segment).

    Blocks are independent (separated by special tokens or whole lines), so the builder can
    count each block's tokens once and drop blocks without re-rendering the whole prompt.
    """
    if not seg.text.strip():
        return ""
    if template.layout in ("starcoder2", "bundled", "ltr-repo"):
        return f"{template.file_sep}{seg.path}\n{_with_newline(seg.text)}"
    if template.layout == "qwen":
        return f"{template.file_sep}{seg.path}\n{_with_newline(seg.text)}\n"
    style = comment_style(fim.language, fim.path)
    if template.layout == "path-comments":
        start, end = style
        return f"{start} {seg.path}{' ' + end if end else ''}\n{_with_newline(seg.text)}\n"
    return _commented(seg, style)


def head(template: Template, fim: FimInput, blocks: list[str]) -> tuple[str, str]:
    """(outer, inner): what precedes the prefix sentinel and what starts the prefix text."""
    files = "".join(blocks)
    path = fim.path or ""
    layout = template.layout
    if layout == "filename":
        header = f"{template.file_name}{path}\n" if path else ""
        return "", header + files
    if layout in ("plain", "ltr"):
        return "", files
    if layout == "path-comments":
        if not files:
            return "", ""
        start, end = comment_style(fim.language, fim.path)
        current = f"{start} {path}{' ' + end if end else ''}\n" if path else ""
        return "", files + current
    if layout == "ltr-repo":
        repo = f"{template.repo_name}{fim.repo_name}" if fim.repo_name is not None else ""
        current = f"{template.file_sep}{path}\n" if path or files or repo else ""
        return f"{repo}{files}{current}", ""
    if layout == "bundled":
        if files:
            return (
                f"{template.repo_name}{fim.repo_name or ''}{files}{template.file_sep}{path}\n",
                "",
            )
        return (f"{template.file_sep}{path}\n" if path else ""), ""
    if not (files or path or fim.repo_name is not None):
        return "", ""
    if layout == "starcoder2":
        repo = f"{template.repo_name}{fim.repo_name}" if fim.repo_name is not None else ""
        return f"{repo}{files}{template.file_sep}", (f"{path}\n" if path else "")
    if layout == "qwen":
        repo = f"{template.repo_name}{fim.repo_name}\n" if fim.repo_name is not None else ""
        return f"{repo}{files}{template.file_sep}{path}\n", ""
    raise AssertionError(f"unknown layout {layout!r}")


def assemble(template: Template, outer: str, inner: str, fim: FimInput, mode: str) -> str:
    t = template
    if t.layout in ("ltr", "ltr-repo"):
        return f"{outer}{inner}{fim.prefix}"
    if mode == PSM:
        return f"{outer}{t.prefix}{t.lead}{inner}{fim.prefix}{t.suffix}{fim.suffix}{t.middle}"
    return f"{outer}{t.prefix}{t.suffix}{fim.suffix}{t.middle}{t.lead}{inner}{fim.prefix}"


def prefix_end(template: Template, text: str, fim: FimInput, mode: str) -> int:
    """Where the code before the cursor ends in ``text`` (which ``assemble`` made): the
    end of the text, except in PSM, where the suffix sentinel, the suffix and the middle
    sentinel follow it."""
    t = template
    if t.layout in ("ltr", "ltr-repo") or mode != PSM:
        return len(text)
    return len(text) - len(t.suffix) - len(fim.suffix) - len(t.middle)


def check_mode(template: Template, mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"FIM mode must be one of {', '.join(MODES)}; got {mode!r}")
    if mode == SPM and not template.spm:
        raise ValueError(
            f"{template.family} was not trained with SPM samples; use psm "
            f"(SPM works with {', '.join(spm_families())})"
        )


def render(fim: FimInput, family: str, mode: str = PSM) -> str:
    """The prompt text for ``fim`` in ``family``'s format, with every extra segment.

    Raises ValueError for an unknown family or for SPM with a family not trained on it.
    """
    template = get_template(family)
    check_mode(template, mode)
    blocks = [b for seg in fim.extra if (b := extra_block(template, seg, fim))]
    outer, inner = head(template, fim, blocks)
    return assemble(template, outer, inner, fim, mode)
