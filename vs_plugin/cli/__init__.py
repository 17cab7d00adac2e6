"""The ``vs-plugin`` command line: one module per subcommand."""
