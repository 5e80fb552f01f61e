-- Each service reads and writes only its own tables: the order service no
-- longer prices an order from inventory's table. Inventory records the unit
-- price on the reservation (so a repeated reserve answers the same price,
-- whatever the product's price became since), and the order learns its
-- amount from that answer: an order inventory has not priced yet has none.
-- A release that arrived before any reserve (a fence) priced nothing.

ALTER TABLE reservations ADD COLUMN unit_price_cents BIGINT CHECK (unit_price_cents >= 0);
-- Rows made before: the price the order was charged at, where there is an
-- order (its charge must keep matching), else the product's price now.
UPDATE reservations r SET unit_price_cents = i.price_cents
FROM inventory i WHERE i.product_id = r.product_id;
UPDATE reservations r SET unit_price_cents = (o.amount * 100 / o.quantity)::BIGINT
FROM orders o WHERE o.id = r.order_id;

ALTER TABLE orders ALTER COLUMN amount DROP NOT NULL;
