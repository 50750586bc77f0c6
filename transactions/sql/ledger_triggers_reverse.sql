DROP TRIGGER IF EXISTS transaction_posted_append_only ON transactions_transaction;
DROP TRIGGER IF EXISTS entry_append_only ON transactions_entry;
DROP TRIGGER IF EXISTS entry_transaction_balanced ON transactions_entry;
DROP FUNCTION IF EXISTS ledger_forbid_change();
DROP FUNCTION IF EXISTS ledger_check_transaction_balanced();
