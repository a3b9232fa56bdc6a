from starcoder_ls.cli import main

# Guarded: the workspace index starts worker processes with "spawn", which imports the parent's
# main module again in each worker (``python -m starcoder_ls`` makes this module the main one).
if __name__ == "__main__":
    raise SystemExit(main())
