"""Usage: the one place tokens are counted and priced (``accounting``) and the per-tenant ledger of
what was spent and saved (``ledger``)."""
