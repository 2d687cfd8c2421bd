#!/bin/sh
# Run once by the postgres image when it makes a new data directory: lets the ticketd user
# stream the primary to a standby (compose.yaml, profile scaled), with its password.
set -e
echo "host replication ${POSTGRES_USER} all scram-sha-256" >> "$PGDATA/pg_hba.conf"
