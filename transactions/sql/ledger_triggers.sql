-- The ledger's invariants, enforced by PostgreSQL itself.

-- 1. Every transaction balances per currency. Checked at COMMIT (deferred), so a
--    service may insert the legs one by one; an unbalanced transaction never commits.
CREATE OR REPLACE FUNCTION ledger_check_transaction_balanced() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    unbalanced record;
BEGIN
    SELECT e.currency, SUM(e.amount) AS total INTO unbalanced
      FROM transactions_entry e
     WHERE e.transaction_id = NEW.transaction_id
     GROUP BY e.currency
    HAVING SUM(e.amount) <> 0
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger: transaction % does not balance in %: sum %',
            NEW.transaction_id, unbalanced.currency, unbalanced.total
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END;
$$;

CREATE CONSTRAINT TRIGGER entry_transaction_balanced
    AFTER INSERT ON transactions_entry
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_check_transaction_balanced();

-- 2. Entries and posted transactions are append-only: corrections are new
--    (reversal/adjustment) transactions, never edits.
CREATE OR REPLACE FUNCTION ledger_forbid_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger: % on % is not allowed, the ledger is append-only',
        TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'check_violation';
END;
$$;

CREATE TRIGGER entry_append_only
    BEFORE UPDATE OR DELETE ON transactions_entry
    FOR EACH ROW EXECUTE FUNCTION ledger_forbid_change();

CREATE TRIGGER transaction_posted_append_only
    BEFORE UPDATE OR DELETE ON transactions_transaction
    FOR EACH ROW WHEN (OLD.status = 'posted')
    EXECUTE FUNCTION ledger_forbid_change();
