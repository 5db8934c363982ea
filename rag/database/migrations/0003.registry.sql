-- The document registry: documents and their chunks, with each document's indexing state.
CREATE TABLE documents (
    id text PRIMARY KEY,
    tenant text NOT NULL,
    name text NOT NULL,
    media_type text NOT NULL,
    size_bytes bigint NOT NULL,
    content_hash text NOT NULL,
    chunk_count integer NOT NULL,
    created_at text NOT NULL,
    state text NOT NULL,
    writer text
);
CREATE UNIQUE INDEX documents_tenant_hash ON documents (tenant, content_hash);
CREATE INDEX documents_tenant_state ON documents (tenant, state);
CREATE TABLE chunks (
    id text PRIMARY KEY,
    document_id text NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    tenant text NOT NULL,
    idx integer NOT NULL,
    text text NOT NULL,
    start integer NOT NULL,
    end_ integer NOT NULL,
    title text NOT NULL,
    token_count integer NOT NULL,
    heading text,
    page integer
);
CREATE INDEX chunks_document ON chunks (document_id);
CREATE INDEX chunks_tenant ON chunks (tenant);
