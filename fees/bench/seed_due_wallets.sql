-- Benchmark data for `manage.py charge_fees` (never run against production):
-- :n users, each with one user wallet whose fee is due now, funded by an opening
-- deposit (a balanced transaction per wallet, so `manage.py reconcile` is clean).
-- 80% KZT, 10% USD, 10% EUR; every 10th wallet cannot pay (it gets blocked).
--   psql "$DATABASE_URL" -v n=100000 -f fees/bench/seed_due_wallets.sql
-- USD/EUR wallets need fresh KZT->USD / KZT->EUR rates (`refresh_rates`, or the
-- admin), else they are skipped.
\set ON_ERROR_STOP on
BEGIN;
CREATE TEMP TABLE bench ON COMMIT DROP AS
SELECT i,
       gen_random_uuid() AS user_id,
       gen_random_uuid() AS wallet_id,
       gen_random_uuid() AS txn_id,
       CASE WHEN i % 10 = 1 THEN 'USD' WHEN i % 10 = 2 THEN 'EUR' ELSE 'KZT' END
           AS currency,
       CASE WHEN i % 10 = 5 THEN 0.10
            WHEN i % 10 IN (1, 2) THEN 10.00
            ELSE 1000.00 END AS balance
  FROM generate_series(1, :n) AS i;

INSERT INTO accounts_user (id, password, is_superuser, email, first_name, last_name,
                           profile_image, is_active, is_staff, is_service, date_joined)
SELECT user_id, '!', false, 'bench-' || wallet_id || '@bench.invalid', '', '', '',
       true, false, false, now()
  FROM bench;

INSERT INTO wallets_wallet (id, number, kind, system_code, name, currency, balance,
                            status, blocked_reason, next_fee_at, created_at,
                            updated_at, owner_id)
SELECT wallet_id, 'B' || lpad(i::text, 15, '0'), 'user', '', '', currency, balance,
       'active', '', now() - interval '1 minute', now() - interval '30 days',
       now(), user_id
  FROM bench;

INSERT INTO transactions_transaction (id, kind, status, description, created_at,
                                      posted_at, metadata)
SELECT txn_id, 'deposit', 'posted', 'benchmark opening balance', now(), now(), '{}'
  FROM bench;

INSERT INTO transactions_entry (currency, amount, balance_after, created_at,
                                wallet_id, transaction_id)
SELECT b.currency, b.balance, b.balance, now(), b.wallet_id, b.txn_id FROM bench b
UNION ALL
SELECT b.currency, -b.balance, NULL, now(), w.id, b.txn_id
  FROM bench b
  JOIN wallets_wallet w
    ON w.kind = 'system' AND w.system_code = 'external' AND w.currency = b.currency;
COMMIT;
ANALYZE wallets_wallet;
ANALYZE transactions_entry;
