//! Tests of the bus against a real Redis (set `CHATD_TEST_REDIS`).
