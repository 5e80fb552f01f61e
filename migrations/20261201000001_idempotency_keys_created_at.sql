-- Idempotency-Keys expire: the order service forgets a key once it is older
-- than --idempotency-retention-secs (default 24 h). Its reconciler deletes
-- the oldest expired keys in small batches, found through this index rather
-- than by scanning the table.
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
