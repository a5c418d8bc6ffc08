from spimflow.cli import main

raise SystemExit(main())
