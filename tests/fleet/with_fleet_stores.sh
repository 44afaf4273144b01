#!/usr/bin/env bash
# with_fleet_stores.sh CMD ARGS... - runs CMD (a GoogleTest binary) with a real PostgreSQL and
# Redis started for it (fleet_stores.sh), their coordinates in the environment:
#   SEKISHO_TEST_PG_DIR        the cluster's directory (for a test that restarts or kills it)
#   SEKISHO_TEST_PG_CONNINFO   a conninfo file for the gateway role (Unix socket)
#   SEKISHO_TEST_PG_TLS_CONNINFO  the same role over TCP with TLS (sslmode=verify-full, the test CA)
#   SEKISHO_TEST_REDIS         unix:/PATH of the Redis socket
#   SEKISHO_TEST_REDIS_PASSWORD_FILE
#   SEKISHO_TEST_REDIS_TLS     127.0.0.1:PORT of Redis's TLS port; SEKISHO_TEST_CA the CA file
# Both are stopped and removed afterwards, whatever CMD did. Exit 77 (skip) when the servers
# are not installed.
set -u
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=SCRIPTDIR/fleet_stores.sh
source "$here/fleet_stores.sh"
fleet_stores_available || { echo "with_fleet_stores: PostgreSQL 15 or redis-server not installed (skipping)" >&2; exit 77; }
trap fleet_stores_cleanup EXIT
trap 'exit 1' INT TERM
fleet_stores_begin "$(mktemp -d /tmp/sekisho-fleet-stores.XXXXXX)"
fleet_start_postgres || { echo "with_fleet_stores: PostgreSQL did not start" >&2; exit 1; }
fleet_start_redis || { echo "with_fleet_stores: redis-server did not start" >&2; exit 1; }
export SEKISHO_TEST_PG_DIR="$FLEET_DIR" SEKISHO_TEST_PG_CONNINFO="$FLEET_DIR/gateway.conninfo"
export SEKISHO_TEST_PG_TLS_CONNINFO="$FLEET_DIR/gateway-tls.conninfo"
export SEKISHO_TEST_REDIS="unix:$FLEET_DIR/redis.sock" SEKISHO_TEST_REDIS_PASSWORD_FILE="$FLEET_DIR/redis.password"
export SEKISHO_TEST_REDIS_TLS="127.0.0.1:$FLEET_REDIS_TLS_PORT" SEKISHO_TEST_CA="$FLEET_DIR/tls/ca.pem"
"$@"
