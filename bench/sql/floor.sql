-- pgbench: one wallet operation as SQL (conditional UPDATE + entry INSERT, one
-- statement) and its COMMIT. :accounts is 1 (one hot row) or 1000.
\set account random(1, :accounts)
\set delta random(0, 1) * 2 - 1
BEGIN;
WITH w AS (
    UPDATE bench_account SET balance = balance + :delta
     WHERE id = :account AND balance + :delta >= 0 AND status = 'active'
 RETURNING id, balance
)
INSERT INTO bench_entry (account_id, amount, balance_after, created_at)
SELECT id, :delta, balance, now() FROM w;
COMMIT;
