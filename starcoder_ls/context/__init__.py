"""Context for a completion: the window of the current file around the cursor (``infile``) and
what other files of the workspace contribute."""
