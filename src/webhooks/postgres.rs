//! Webhooks in PostgreSQL.
