"""The training side of starcoder-ls.

Corpus -> tokenizer -> FIM shards -> GPTBigCode model -> training -> HF/GGUF export ->
quantization -> evaluation. Each stage is a module with a plain-Python entry point and a
``starcoder-ls recipe <stage>`` sub-command. Heavy libraries (torch, transformers, gguf,
llama_cpp) are imported inside the functions that need them so that the CLI starts fast.
"""
