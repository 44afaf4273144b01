#!/usr/bin/env bash
# fleet_stores.sh - a real PostgreSQL 15 cluster and a real Redis 7 for the fleet tests, each in
# a temporary directory of its own, reached over Unix sockets (gateways in network namespaces
# share the file system, so they reach them too). Sourced by tests; nothing is left behind:
# fleet_stores_cleanup (on EXIT) stops both by PID and removes the directory.
#
#   fleet_stores_begin DIR      sets FLEET_DIR=DIR (created; chowned for the postgres user)
#   fleet_start_postgres        initdb (log: $FLEET_DIR/pglog/postgres.log); also TCP on 127.0.0.1:
#                               $FLEET_PG_PORT with TLS only (a test CA, $FLEET_DIR/tls/ca.pem;
#                               $FLEET_DIR/gateway-tls.conninfo: sslmode=verify-full) + pg_ctl start; creates database sekisho and the roles
#                               sekisho_gateway, sekisho_desk, sekisho_controller (docs/security.md);
#                               writes $FLEET_DIR/<role>.conninfo (0640) for each; FLEET_PG_PID
#   fleet_stop_postgres [MODE]  pg_ctl stop -m MODE (fast; immediate = a crash)
#   fleet_kill_postgres         kill -9 of the postmaster (its children exit with it)
#   fleet_psql SQL              psql as the superuser on database sekisho, tuples only
#   fleet_start_redis           redis-server on $FLEET_DIR/redis.sock with a password (requirepass)
#                               from $FLEET_DIR/redis.password (0640), and TLS on 127.0.0.1:
#                               $FLEET_REDIS_TLS_PORT (the test CA; no plain TCP); FLEET_REDIS_PID
#   fleet_kill_redis            kill -9 of redis-server
#   fleet_redis_cli ARGS...     redis-cli on the socket, authenticated
#   fleet_write_config FILE GATEWAY [GROUP]   a fleet file naming both stores
#
# initdb refuses root: the cluster runs as the postgres user (Debian's postgresql-15 creates it).
set -u

FLEET_PG_BIN="${FLEET_PG_BIN:-/usr/lib/postgresql/15/bin}"
FLEET_DIR=""
FLEET_PG_PID=""
FLEET_PG_PORT=""
FLEET_REDIS_PID=""
FLEET_REDIS_TLS_PORT=""

fleet_stores_available() {
  [ -x "$FLEET_PG_BIN/initdb" ] && [ -x "$FLEET_PG_BIN/pg_ctl" ] && command -v redis-server >/dev/null &&
    command -v redis-cli >/dev/null && id postgres >/dev/null 2>&1
}

fleet_stores_begin() {
  FLEET_DIR="$1"
  mkdir -p "$FLEET_DIR/pg" "$FLEET_DIR/pgsock" "$FLEET_DIR/pglog"
  chown postgres "$FLEET_DIR/pg" "$FLEET_DIR/pgsock" "$FLEET_DIR/pglog"
  chmod 755 "$FLEET_DIR"
}

_fleet_pg() { runuser -u postgres -- "$@"; }
# The cluster's port (its Unix socket's name too), from its configuration: a
# script that only sets FLEET_DIR (a test attaching to a running cluster) gets it.
_fleet_pg_port() { echo "${FLEET_PG_PORT:-$(sed -n 's/^port = //p' "$FLEET_DIR/pg/postgresql.conf")}"; }

fleet_psql() {
  _fleet_pg "$FLEET_PG_BIN/psql" -X -q -t -A -v ON_ERROR_STOP=1 -h "$FLEET_DIR/pgsock" -p "$(_fleet_pg_port)" -d sekisho -c "$1"
}

fleet_start_postgres() {
  if [ ! -f "$FLEET_DIR/pg/PG_VERSION" ]; then
    _fleet_pg "$FLEET_PG_BIN/initdb" -D "$FLEET_DIR/pg" -A trust -U postgres --no-sync >"$FLEET_DIR/initdb.log" 2>&1 ||
      { cat "$FLEET_DIR/initdb.log" >&2; return 1; }
    _fleet_tls_files || return 1
    FLEET_PG_PORT="$(_fleet_free_port)"
    cat >>"$FLEET_DIR/pg/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $FLEET_PG_PORT
unix_socket_directories = '$FLEET_DIR/pgsock'
ssl = on
ssl_cert_file = '$FLEET_DIR/tls/server.pem'
ssl_key_file = '$FLEET_DIR/tls/server.key'
fsync = on
max_connections = 100
log_min_messages = warning
CONF
    # TCP only with TLS: first match wins, so this line goes first.
    { echo "hostnossl all all all reject"; cat "$FLEET_DIR/pg/pg_hba.conf"; } >"$FLEET_DIR/pg/pg_hba.new"
    mv "$FLEET_DIR/pg/pg_hba.new" "$FLEET_DIR/pg/pg_hba.conf"
    chown postgres "$FLEET_DIR/pg/pg_hba.conf"
  fi
  FLEET_PG_PORT="$(sed -n 's/^port = //p' "$FLEET_DIR/pg/postgresql.conf")"
  _fleet_pg "$FLEET_PG_BIN/pg_ctl" -D "$FLEET_DIR/pg" -l "$FLEET_DIR/pglog/postgres.log" -w -t 30 start >/dev/null ||
    { tail -n 20 "$FLEET_DIR/pglog/postgres.log" >&2; return 1; }
  FLEET_PG_PID="$(head -n 1 "$FLEET_DIR/pg/postmaster.pid")"
  if [ ! -f "$FLEET_DIR/gateway.conninfo" ]; then
    _fleet_pg "$FLEET_PG_BIN/psql" -X -q -h "$FLEET_DIR/pgsock" -p "$FLEET_PG_PORT" -d postgres -c "CREATE DATABASE sekisho" >/dev/null || return 1
    local role
    for role in sekisho_gateway sekisho_desk sekisho_controller; do
      fleet_psql "CREATE ROLE $role LOGIN" >/dev/null || return 1
    done
    # The schema's owner is the controller; the gateways create what is missing at start
    # (CREATE ... IF NOT EXISTS) in the test cluster, so they may create in schema public.
    fleet_psql "GRANT ALL ON SCHEMA public TO sekisho_gateway, sekisho_controller" >/dev/null || return 1
    for role in gateway desk controller; do
      printf 'host=%s port=%s dbname=sekisho user=sekisho_%s application_name=sekisho\n' "$FLEET_DIR/pgsock" "$FLEET_PG_PORT" "$role" \
        >"$FLEET_DIR/$role.conninfo"
      chmod 0640 "$FLEET_DIR/$role.conninfo"
    done
    printf 'host=localhost hostaddr=127.0.0.1 port=%s dbname=sekisho user=sekisho_gateway sslmode=verify-full sslrootcert=%s\n' \
      "$FLEET_PG_PORT" "$FLEET_DIR/tls/ca.pem" >"$FLEET_DIR/gateway-tls.conninfo"
    chmod 0640 "$FLEET_DIR/gateway-tls.conninfo"
  fi
}

_fleet_free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 40000))
    ss -Hltn "sport = :$p" | grep -q . || { echo "$p"; return; }
  done
}

# A test CA and a server certificate for localhost (the key readable by postgres only).
_fleet_tls_files() {
  mkdir -p "$FLEET_DIR/tls"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=sekisho test CA" \
    -keyout "$FLEET_DIR/tls/ca.key" -out "$FLEET_DIR/tls/ca.pem" >/dev/null 2>&1 || return 1
  openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost" \
    -keyout "$FLEET_DIR/tls/server.key" -out "$FLEET_DIR/tls/server.csr" >/dev/null 2>&1 || return 1
  openssl x509 -req -in "$FLEET_DIR/tls/server.csr" -CA "$FLEET_DIR/tls/ca.pem" -CAkey "$FLEET_DIR/tls/ca.key" \
    -CAcreateserial -days 2 -copy_extensions copy -out "$FLEET_DIR/tls/server.pem" >/dev/null 2>&1 || return 1
  # Another CA, for a test that a server certificate it did not sign is refused.
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=another CA" \
    -keyout "$FLEET_DIR/tls/other-ca.key" -out "$FLEET_DIR/tls/other-ca.pem" >/dev/null 2>&1 || return 1
  chown postgres "$FLEET_DIR/tls/server.key"
  chmod 0600 "$FLEET_DIR/tls/server.key"
}

fleet_stop_postgres() {
  [ -n "$FLEET_PG_PID" ] || return 0
  _fleet_pg "$FLEET_PG_BIN/pg_ctl" -D "$FLEET_DIR/pg" -m "${1:-fast}" -w -t 30 stop >/dev/null 2>&1
  FLEET_PG_PID=""
}

fleet_kill_postgres() {
  [ -n "$FLEET_PG_PID" ] || return 0
  kill -KILL "$FLEET_PG_PID" 2>/dev/null
  local i
  for i in $(seq 1 50); do kill -0 "$FLEET_PG_PID" 2>/dev/null || break; sleep 0.1; done
  # The postmaster's children notice it is gone and exit; wait for the shared memory to go.
  for i in $(seq 1 50); do pgrep -u postgres -f "$FLEET_DIR/pg" >/dev/null || break; sleep 0.1; done
  rm -f "$FLEET_DIR/pg/postmaster.pid"
  FLEET_PG_PID=""
}

fleet_start_redis() {
  if [ ! -f "$FLEET_DIR/redis.password" ]; then
    head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$FLEET_DIR/redis.password"
    chmod 0640 "$FLEET_DIR/redis.password"
  fi
  [ -f "$FLEET_DIR/tls/server.pem" ] || _fleet_tls_files || return 1
  [ -n "${FLEET_REDIS_TLS_PORT:-}" ] || FLEET_REDIS_TLS_PORT="$(_fleet_free_port)"
  redis-server --port 0 --unixsocket "$FLEET_DIR/redis.sock" --unixsocketperm 700 \
    --bind 127.0.0.1 --tls-port "$FLEET_REDIS_TLS_PORT" --tls-cert-file "$FLEET_DIR/tls/server.pem" \
    --tls-key-file "$FLEET_DIR/tls/server.key" --tls-ca-cert-file "$FLEET_DIR/tls/ca.pem" --tls-auth-clients no \
    --requirepass "$(cat "$FLEET_DIR/redis.password")" --dir "$FLEET_DIR" --save '' --appendonly no \
    --logfile "$FLEET_DIR/redis.log" --daemonize no >/dev/null 2>&1 &
  FLEET_REDIS_PID=$!
  local i
  for i in $(seq 1 100); do
    fleet_redis_cli PING 2>/dev/null | grep -q PONG && return 0
    kill -0 "$FLEET_REDIS_PID" 2>/dev/null || break
    sleep 0.05
  done
  tail -n 20 "$FLEET_DIR/redis.log" >&2
  return 1
}

fleet_kill_redis() {
  [ -n "$FLEET_REDIS_PID" ] || return 0
  kill -KILL "$FLEET_REDIS_PID" 2>/dev/null
  wait "$FLEET_REDIS_PID" 2>/dev/null
  FLEET_REDIS_PID=""
}

fleet_redis_cli() {
  REDISCLI_AUTH="$(cat "$FLEET_DIR/redis.password")" redis-cli -s "$FLEET_DIR/redis.sock" "$@"
}

fleet_write_config() { # FILE GATEWAY [GROUP]
  cat >"$1" <<CONF
gateway: $2
group: ${3:-default}
postgres:
  conninfo_file: $FLEET_DIR/gateway.conninfo
redis:
  address: unix:$FLEET_DIR/redis.sock
  password_file: $FLEET_DIR/redis.password
sync_interval: 100ms
CONF
}

fleet_stores_cleanup() {
  fleet_kill_redis
  fleet_stop_postgres immediate
  [ -n "$FLEET_PG_PID" ] && fleet_kill_postgres
  [ -n "$FLEET_DIR" ] && [ -z "${KEEP_TMP:-}" ] && rm -rf "$FLEET_DIR"
  return 0
}
