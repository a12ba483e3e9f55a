from spillgate.cli import main

raise SystemExit(main())
