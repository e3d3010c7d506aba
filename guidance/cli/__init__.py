"""The ``iort`` command line: ``main`` parses, ``commands`` run one subcommand each, ``inputs``
reads CASE and transform arguments."""
