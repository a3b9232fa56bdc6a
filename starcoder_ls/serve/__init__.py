"""The team HTTP server (``starcoder-ls serve``): one model shared by many clients over OpenAI
completions and llama.cpp's ``/infill``. ``command`` is the CLI, ``app`` the HTTP side,
``engine`` and ``batch`` the generation side."""
