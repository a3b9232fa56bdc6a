"""One exception type for every user-facing failure of the recipe.

The CLI prints ``RecipeError`` messages without a traceback: they describe something the user
can fix (a missing corpus, an unknown preset, a corrupt checkpoint), not a bug.
"""

from starcoder_ls.types import UserError


class RecipeError(UserError):
    """A failure the user can act on; the message says what went wrong and how to fix it."""
