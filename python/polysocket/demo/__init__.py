"""Demo servers run by ``python -m polysocket`` (also in examples/python/)."""
