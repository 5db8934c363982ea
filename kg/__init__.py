"""Knowledge graph built at index time, no LLM: ``extract`` finds names, ``graph`` keeps, ``expand`` walks."""
