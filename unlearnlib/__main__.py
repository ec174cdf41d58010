"""`python -m unlearnlib` is the same as the `unlearnlib` command."""

from unlearnlib.cli import main

raise SystemExit(main())
