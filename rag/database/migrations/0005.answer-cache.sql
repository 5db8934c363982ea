-- The answer cache's entries (their question vectors are in dense_vectors, collection answer_cache) and the
-- documents each entry's answer cited, so that deleting a document drops the entries that cited it.
CREATE TABLE entries (
    id text PRIMARY KEY,
    tenant text NOT NULL,
    question text NOT NULL,
    normalized text NOT NULL,
    answer text NOT NULL,
    citations text NOT NULL,
    abstained integer NOT NULL,
    created_at double precision NOT NULL,
    used_at double precision NOT NULL,
    hits integer NOT NULL DEFAULT 0,
    reference_cost_usd double precision
);
CREATE INDEX entries_normalized ON entries (tenant, normalized);
CREATE INDEX entries_used ON entries (used_at);
CREATE INDEX entries_created ON entries (created_at);
CREATE TABLE cited (
    entry_id text NOT NULL,
    tenant text NOT NULL,
    document_id text NOT NULL,
    PRIMARY KEY (entry_id, document_id)
);
CREATE INDEX cited_document ON cited (tenant, document_id);
