-- The plan's schema, with what correctness needs on top of it:
-- prices, reservations keyed by order, one payment per order, CHECKs, and
-- the columns the reconciler claims stuck orders by.

CREATE TABLE inventory (
    product_id  VARCHAR(255) PRIMARY KEY,
    name        TEXT   NOT NULL DEFAULT '',
    price_cents BIGINT NOT NULL DEFAULT 0 CHECK (price_cents >= 0 AND price_cents <= 1000000),
    stock       INT    NOT NULL DEFAULT 0 CHECK (stock >= 0),
    reserved    INT    NOT NULL DEFAULT 0,
    CONSTRAINT reserved_within_stock CHECK (reserved >= 0 AND reserved <= stock)
);

CREATE TABLE orders (
    id              UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id         VARCHAR(255),
    product_id      VARCHAR(255) NOT NULL REFERENCES inventory (product_id),
    quantity        INT NOT NULL CHECK (quantity > 0),
    amount          DECIMAL(10, 2) NOT NULL CHECK (amount >= 0),
    status          VARCHAR(50) NOT NULL DEFAULT 'PENDING' CHECK (status IN
                        ('PENDING', 'PENDING_INVENTORY', 'PENDING_PAYMENT', 'CONFIRMED', 'FAILED')),
    failure_reason  VARCHAR(50),
    -- The reconciler's bookkeeping: how often it tried, and when it may next.
    attempts        INT NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    created_at      TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    CONSTRAINT failed_has_reason CHECK ((status = 'FAILED') = (failure_reason IS NOT NULL))
);
CREATE INDEX orders_newest ON orders (created_at DESC, id DESC);
CREATE INDEX orders_unsettled ON orders (next_attempt_at)
    WHERE status IN ('PENDING', 'PENDING_INVENTORY', 'PENDING_PAYMENT');

-- One row per order that ever asked for stock. RESERVED holds stock,
-- COMMITTED took it out of stock, RELEASED gave it back (or, inserted first,
-- fences off a late reserve), REJECTED remembers "out of stock" so a repeated
-- reserve returns the first answer.
CREATE TABLE reservations (
    order_id   UUID PRIMARY KEY,
    product_id VARCHAR(255) NOT NULL REFERENCES inventory (product_id),
    quantity   INT NOT NULL CHECK (quantity > 0),
    status     VARCHAR(20) NOT NULL CHECK (status IN ('RESERVED', 'COMMITTED', 'RELEASED', 'REJECTED')),
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);
CREATE INDEX reservations_live ON reservations (product_id) WHERE status = 'RESERVED';

-- At most one payment per order. VOIDED is a fence written when an order is
-- given up before any charge arrived, so a late charge cannot succeed.
CREATE TABLE payments (
    id             UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    order_id       UUID NOT NULL UNIQUE REFERENCES orders (id),
    amount         DECIMAL(10, 2) NOT NULL CHECK (amount >= 0),
    status         VARCHAR(50) NOT NULL DEFAULT 'PENDING' CHECK (status IN
                       ('PENDING', 'COMPLETED', 'DECLINED', 'REFUNDED', 'VOIDED')),
    decline_reason VARCHAR(100),
    created_at     TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT NOW()
);

-- POST /orders with an Idempotency-Key: the first request's fingerprint and
-- the order it created, so a retry gets the same order back.
CREATE TABLE idempotency_keys (
    key          VARCHAR(255) PRIMARY KEY,
    request_hash TEXT NOT NULL,
    order_id     UUID NOT NULL REFERENCES orders (id),
    created_at   TIMESTAMPTZ NOT NULL DEFAULT NOW()
);
