"""`python -m f2llm.train` (and `torchrun -m f2llm.train`): one stage as its own process."""

from f2llm.train.trainer import main

raise SystemExit(main())
