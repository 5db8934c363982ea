"""`rag tune`: the configuration space, the sweep over it, and its report."""
