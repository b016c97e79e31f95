//! Tests against a real PostgreSQL server, given by `CHATD_TEST_PG`.
