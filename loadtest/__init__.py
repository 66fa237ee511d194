"""Load generator, benchmark suite and reports for the GoogLeNet service (`python -m loadtest`; docs/loadtest.md)."""
