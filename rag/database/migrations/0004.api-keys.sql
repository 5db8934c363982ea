-- API keys: only their SHA-256 digests, with the tenant each acts for.
CREATE TABLE api_keys (
    digest text PRIMARY KEY,
    tenant text NOT NULL,
    label text NOT NULL,
    created_at text NOT NULL
);
CREATE INDEX api_keys_label ON api_keys (label);
