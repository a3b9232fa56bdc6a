from starcoder_ls.cli import main

raise SystemExit(main())
