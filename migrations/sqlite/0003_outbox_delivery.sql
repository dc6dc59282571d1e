-- Outbox delivery shared by several replicas, and invitation links kept out of message bodies.
--
-- A replica claims a due message for a lease (`claim`, `claimed_until`) before sending it, so
-- one replica sends it. A failed attempt schedules the next one (`next_attempt_at`: capped
-- exponential backoff) or, after the maximum number of attempts, parks the message
-- (`parked_at`, with `last_error`); neither holds up later messages. A message whose
-- invitation is cancelled before it is sent is withdrawn (`cancelled_at`).
--
-- The invitation link is kept in `link` (the body holds a placeholder for it) only until the
-- message is sent, parked or withdrawn; then it is cleared.
ALTER TABLE outbox ADD COLUMN invitation_id TEXT;
ALTER TABLE outbox ADD COLUMN link TEXT;
ALTER TABLE outbox ADD COLUMN next_attempt_at TEXT;
ALTER TABLE outbox ADD COLUMN claim TEXT;
ALTER TABLE outbox ADD COLUMN claimed_until TEXT;
ALTER TABLE outbox ADD COLUMN parked_at TEXT;
ALTER TABLE outbox ADD COLUMN cancelled_at TEXT;

DROP INDEX outbox_pending;
-- Messages still to send, in queue order.
CREATE INDEX outbox_open ON outbox (seq) WHERE sent_at IS NULL AND parked_at IS NULL AND cancelled_at IS NULL;
CREATE INDEX outbox_invitation ON outbox (invitation_id) WHERE invitation_id IS NOT NULL;

-- Messages sent before this migration carried their link in the body; it is not kept.
UPDATE outbox SET body = '(removed after delivery: the message held an invitation link)'
    WHERE sent_at IS NOT NULL AND kind = 'invitation';
