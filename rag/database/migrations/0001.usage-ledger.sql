-- The usage ledger: counters per tenant and UTC hour (hours since the epoch), added to by every answer.
-- Totals, daily spend and the dashboard's series are sums over these rows.
CREATE TABLE usage_counters (
    tenant text NOT NULL,
    hour bigint NOT NULL,
    metric text NOT NULL,
    value double precision NOT NULL,
    PRIMARY KEY (tenant, hour, metric)
);
CREATE TABLE usage_meta (
    key text PRIMARY KEY,
    value double precision NOT NULL
);
