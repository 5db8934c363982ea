-- The lexical store's rows: each chunk's analyzed terms, and a generation that every write bumps (each
-- worker rebuilds its in-memory BM25 index when the generation moved).
CREATE TABLE lexical_terms (
    seq bigserial PRIMARY KEY,
    chunk_id text NOT NULL UNIQUE,
    document_id text NOT NULL,
    tenant text NOT NULL,
    tokens text NOT NULL
);
CREATE INDEX lexical_terms_by_document ON lexical_terms (tenant, document_id);
CREATE TABLE lexical_state (
    id integer PRIMARY KEY CHECK (id = 0),
    store_id text NOT NULL,
    generation bigint NOT NULL
);
