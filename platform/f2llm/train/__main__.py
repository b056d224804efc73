"""`python -m f2llm.train` (and `torchrun -m f2llm.train`): one stage as its own process."""

from f2llm.train.launch import main

raise SystemExit(main())
