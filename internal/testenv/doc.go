// Package testenv gives each test its own Postgres database and Redis key prefix on the servers named
// by TENANTGATE_TEST_DATABASE_URL and TENANTGATE_TEST_REDIS_URL (default: the local servers), and
// removes them at cleanup. An unreachable server fails the test under CI=true and skips it, loudly,
// otherwise.
package testenv
