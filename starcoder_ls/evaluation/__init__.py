"""Every evaluation of the completions a model gives: held-out lines of a corpus
(``heldout``), cross-file recall on a workspace (``recall``). Used by ``starcoder-ls eval`` and
by the recipe; it imports the serving code, never the training package.
"""
