"""Private parts of the ``streamrt`` command line; the entry point is :mod:`streamrt.cli`."""
