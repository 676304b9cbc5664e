#!/bin/sh
# Runs once, on the first start of the TimescaleDB container (docker-entrypoint-initdb.d):
# the login role of Grafana's PostgreSQL data source. Migration 0006 (app/timescale.py)
# grants it SELECT on the rollups only: daily_consumption, consumption_hourly,
# consumption_monthly and the continuous aggregates. Customers, invoices and sessions stay
# out of its reach.
set -eu
psql -v ON_ERROR_STOP=1 -v pw="$GRAFANA_DB_PASSWORD" \
     --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<'SQL'
CREATE ROLE grafana_reader LOGIN PASSWORD :'pw' CONNECTION LIMIT 10;
ALTER ROLE grafana_reader SET default_transaction_read_only = on;
ALTER ROLE grafana_reader SET statement_timeout = '30s';
SQL
