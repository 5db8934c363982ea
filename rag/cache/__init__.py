"""The semantic answer cache: entries and their question index (``semantic``), the hard guard that
vetoes near-duplicates which ask something else (``guard``), and the fitted verifier (``verifier``)."""
