-- Dense vectors (pgvector): one row per chunk or cached question, in named collections of one dimension.
-- Each collection's HNSW index is built by its store on first use (its dimension comes from the embedder):
-- an expression index on embedding::vector(dim), partial on the collection.
CREATE EXTENSION IF NOT EXISTS vector;
CREATE TABLE dense_collections (
    name text PRIMARY KEY,
    dim integer NOT NULL
);
CREATE TABLE dense_vectors (
    collection text NOT NULL REFERENCES dense_collections (name),
    id text NOT NULL,
    tenant text NOT NULL,
    document_id text NOT NULL,
    embedding vector NOT NULL,
    PRIMARY KEY (collection, id)
);
CREATE INDEX dense_vectors_tenant_document ON dense_vectors (collection, tenant, document_id);
