-- The floors' own tables (in the benchmark's throw-away database only): an account
-- row per wallet and an append-only entry per operation, shaped like the ledger's.
CREATE TABLE IF NOT EXISTS bench_account (
    id integer PRIMARY KEY,
    balance numeric(20, 2) NOT NULL CHECK (balance >= 0),
    status varchar(8) NOT NULL DEFAULT 'active'
);
CREATE TABLE IF NOT EXISTS bench_entry (
    id bigserial PRIMARY KEY,
    account_id integer NOT NULL REFERENCES bench_account (id),
    amount numeric(20, 2) NOT NULL,
    balance_after numeric(20, 2),
    created_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS bench_entry_account_idx ON bench_entry (account_id, id DESC);
TRUNCATE bench_entry;
DELETE FROM bench_account;
INSERT INTO bench_account (id, balance)
SELECT i, 1000000.00 FROM generate_series(1, 1000) AS i;
ANALYZE bench_account;
