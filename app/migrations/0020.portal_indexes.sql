-- depends: 0013.portal_prefs
-- Portal reads (issue #6, bench/portal_load.py): covering indexes so that a customer's
-- balance, last payment and invoiced periods come from one or two index pages by
-- index-only scans, instead of one heap page per invoice or payment (the close writes a
-- month at a time, so a customer's 24 invoices lie on 24 different heap pages).

CREATE INDEX invoices_customer_portal ON invoices (customer_id, period)
    INCLUDE (invoice_number, total_fen);

CREATE INDEX payments_customer_portal ON payments (customer_id, paid_on, received_at, payment_id)
    INCLUDE (amount_fen);
