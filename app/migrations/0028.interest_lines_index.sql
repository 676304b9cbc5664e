-- depends: 0026.write_speed
-- The interest lines of invoices, found without reading their other lines (issue #5,
-- speed). After each chunk of a close, `interest_charges.record_interest_after_close`
-- records the interest the chunk's invoices charged; reading the chunk's lines by the
-- primary key's range to find the few interest lines among ~15,000 cost 0.4–0.5 s of
-- backend CPU per close of 100,000 invoices. A partial index holds only interest lines, so
-- it costs nothing to the other lines' inserts.
CREATE INDEX invoice_lines_interest ON invoice_lines (invoice_number) WHERE service = 'interest';
