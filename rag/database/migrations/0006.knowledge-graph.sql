-- The knowledge graph's rows: each chunk's entity mentions and relations, and a version per tenant that
-- every write bumps (workers rebuild their in-memory graph of a tenant when it moved).
CREATE TABLE mentions (
    tenant text NOT NULL,
    document_id text NOT NULL,
    chunk_id text NOT NULL,
    entity text NOT NULL,
    surface text NOT NULL,
    is_title integer NOT NULL,
    occurrences integer NOT NULL,
    PRIMARY KEY (tenant, chunk_id, entity, surface, is_title)
);
CREATE INDEX mentions_by_document ON mentions (tenant, document_id);
CREATE TABLE edges (
    seq bigserial PRIMARY KEY,
    tenant text NOT NULL,
    document_id text NOT NULL,
    chunk_id text NOT NULL,
    a text NOT NULL,
    b text NOT NULL,
    label text NOT NULL
);
CREATE INDEX edges_by_chunk ON edges (tenant, chunk_id);
CREATE INDEX edges_by_document ON edges (tenant, document_id);
CREATE TABLE graph_versions (
    tenant text PRIMARY KEY,
    version bigint NOT NULL
);
