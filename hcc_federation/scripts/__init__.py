"""Console scripts: a testable core each, and a thin main()."""
