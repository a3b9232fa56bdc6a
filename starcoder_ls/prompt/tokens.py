"""Special tokens of the starcoder-ls tokenizer (the bundled model's), shared by the prompt
templates and the recipe that trains it.

The first 19 are StarCoder's, in StarCoder's spelling and order (so id 0 is ``<|endoftext|>``,
ids 1-3 are the FIM sentinels, exactly as in ``bigcode/starcoder``). StarCoder2's repository
tokens ``<repo_name>`` and ``<file_sep>`` follow, so a prompt can carry several files of one
repository the way StarCoder2 was trained.
"""

from __future__ import annotations

ENDOFTEXT = "<|endoftext|>"
FIM_PREFIX = "<fim_prefix>"
FIM_MIDDLE = "<fim_middle>"
FIM_SUFFIX = "<fim_suffix>"
FIM_PAD = "<fim_pad>"
FILENAME = "<filename>"
REPO_NAME = "<repo_name>"
FILE_SEP = "<file_sep>"

SPECIAL_TOKENS: tuple[str, ...] = (
    ENDOFTEXT,
    FIM_PREFIX,
    FIM_MIDDLE,
    FIM_SUFFIX,
    FIM_PAD,
    FILENAME,
    "<gh_stars>",
    "<issue_start>",
    "<issue_comment>",
    "<issue_closed>",
    "<jupyter_start>",
    "<jupyter_text>",
    "<jupyter_code>",
    "<jupyter_output>",
    "<empty_output>",
    "<commit_before>",
    "<commit_msg>",
    "<commit_after>",
    "<reponame>",
    REPO_NAME,
    FILE_SEP,
)

SPECIAL_IDS: dict[str, int] = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}

# Tokens that end a generation: the end of a document, FIM padding, and the start of the next
# file in repository format (a model that finished the middle may go on with another file).
STOP_TOKENS: tuple[str, ...] = (ENDOFTEXT, FIM_PAD, FILE_SEP)
