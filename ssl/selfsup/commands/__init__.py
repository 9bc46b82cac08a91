"""CLI command modules; see :mod:`selfsup.cli` for the protocol."""
