#!/bin/sh
# Runs once, when the PostgreSQL volume is first initialised. The schema owner (POSTGRES_USER)
# runs the migrations; the broker connects as masp_runtime, which `masp db upgrade
# --runtime-role masp_runtime` grants only INSERT and SELECT on the audit tables.
set -eu
runtime_password=$(cat /run/secrets/postgres_runtime_password)
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
     -v pw="$runtime_password" <<'SQL'
CREATE ROLE masp_runtime LOGIN PASSWORD :'pw';
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
SQL
