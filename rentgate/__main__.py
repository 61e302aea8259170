from rentgate.cli import main

raise SystemExit(main())
