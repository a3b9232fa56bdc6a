"""Fill-in-the-middle prompts: one template per model family, assembled within a token budget."""

from __future__ import annotations

from starcoder_ls.prompt.builder import build_prompt, estimate_tokens
from starcoder_ls.prompt.templates import FAMILIES, MODES, PSM, SPM, Template, render

__all__ = [
    "FAMILIES",
    "MODES",
    "PSM",
    "SPM",
    "Template",
    "build_prompt",
    "estimate_tokens",
    "render",
]
