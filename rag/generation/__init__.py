"""Generation: the LLM clients (``llm``), the prompt and its injection defense (``prompt``,
``injection``), and the cascade's check of a cheap answer (``router``)."""
