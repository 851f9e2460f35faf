#!/usr/bin/env bash
# Production tracking for one user: an MLflow tracking server on a private PostgreSQL cluster, both
# on 127.0.0.1, owned by the user running this (not root: initdb refuses it).
#
#   bash tools/mlflow-server.sh start-db   create (once) and start the cluster, role and database
#   bash tools/mlflow-server.sh stop-db    stop the cluster
#   bash tools/mlflow-server.sh serve      start-db, then run mlflow server in the foreground (systemd)
#   bash tools/mlflow-server.sh url        print MLFLOW_TRACKING_URI= and MLFLOW_BACKEND_STORE_URI=
#
# Files under ${XDG_DATA_HOME:-~/.local/share}/retraind: postgres/data (the cluster), postgres/run
# (its Unix socket), postgres/postgres.log, postgres/mlflow.password (role mlflow, mode 0600),
# mlflow-artifacts/ (what the server stores for its clients).
# Environment: RETRAIND_PG_PORT (5433), RETRAIND_MLFLOW_PORT (5000), RETRAIND_MLFLOW_WORKERS (2),
# RETRAIND_MLFLOW_ALLOWED_HOSTS (127.0.0.1:PORT,localhost:PORT: MLflow answers 403 to other Host
# headers; add the name a reverse proxy forwards), PG_BINDIR (where initdb is; default: PATH, then
# the newest /usr/lib/postgresql/*/bin).
# Then point retraind at it: tracking_uri = "http://127.0.0.1:5000" in ~/.config/retraind/config.toml.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)

PG_PORT=${RETRAIND_PG_PORT:-5433}
MLFLOW_PORT=${RETRAIND_MLFLOW_PORT:-5000}
WORKERS=${RETRAIND_MLFLOW_WORKERS:-2}
ALLOWED_HOSTS=${RETRAIND_MLFLOW_ALLOWED_HOSTS:-127.0.0.1:$MLFLOW_PORT,localhost:$MLFLOW_PORT}
BASE=${XDG_DATA_HOME:-$HOME/.local/share}/retraind
PG_DIR=$BASE/postgres
PGDATA=$PG_DIR/data
SOCKET_DIR=$PG_DIR/run
PASSWORD_FILE=$PG_DIR/mlflow.password
ARTIFACTS=$BASE/mlflow-artifacts
MLFLOW=$repo/.venv/bin/mlflow
EX_CONFIG=78  # systemd does not restart on it (RestartPreventExitStatus=78)

say() { echo "mlflow-server: $*" >&2; }
die() { say "$*"; exit "$EX_CONFIG"; }

pg_bin() {
  if [[ -n ${PG_BINDIR:-} ]]; then echo "$PG_BINDIR"; return; fi
  # Debian keeps initdb off PATH; a symlink on PATH points into the real directory, next to psql.
  if command -v initdb >/dev/null; then dirname "$(readlink -f "$(command -v initdb)")"; return; fi
  local newest
  newest=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  [[ -x $newest/initdb ]] || die "PostgreSQL is not installed (apt-get install postgresql)"
  echo "$newest"
}

running() { [[ -f $PGDATA/PG_VERSION ]] && "$BIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; }

init_cluster() {
  [[ -f $PGDATA/PG_VERSION ]] && return
  say "creating the PostgreSQL cluster in $PGDATA"
  # Local connections: peer (the OS user is the superuser); TCP: passwords only.
  "$BIN/initdb" -D "$PGDATA" --auth-local=peer --auth-host=scram-sha-256 -E UTF8 \
    --locale=C.UTF-8 >/dev/null
  echo "include_if_exists = 'retraind.conf'" >> "$PGDATA/postgresql.conf"
}

start_db() {
  [[ $(id -u) -ne 0 ]] || die "run as the user who runs retraind, not root (initdb refuses root)"
  BIN=$(pg_bin)
  mkdir -p "$PG_DIR" "$SOCKET_DIR" "$ARTIFACTS"
  chmod 700 "$PG_DIR" "$SOCKET_DIR"
  (( ${#SOCKET_DIR} < 90 )) || die "socket path too long for a Unix socket: $SOCKET_DIR"
  init_cluster
  # Rewritten on every start, so a changed RETRAIND_PG_PORT takes effect.
  printf "listen_addresses = '127.0.0.1'\nport = %d\nunix_socket_directories = '%s'\n" \
    "$PG_PORT" "$SOCKET_DIR" > "$PGDATA/retraind.conf"
  if ! running; then
    "$BIN/pg_ctl" -D "$PGDATA" -l "$PG_DIR/postgres.log" -w -t 60 start >/dev/null \
      || { tail -n 20 "$PG_DIR/postgres.log" >&2; exit 1; }
  fi
  ensure_role_and_database
}

ensure_role_and_database() {
  if [[ ! -s $PASSWORD_FILE ]]; then
    (umask 077 && head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' > "$PASSWORD_FILE")
  fi
  # Idempotent: create what is missing, and (re)set the password from the file.
  # psql reads the password itself: on its command line ps would show it to every user.
  PASSWORD_FILE=$PASSWORD_FILE "$BIN/psql" -h "$SOCKET_DIR" -p "$PG_PORT" -d postgres -X -q \
    -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
\set password `cat "$PASSWORD_FILE"`
SELECT 'CREATE ROLE mlflow LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'mlflow')\gexec
ALTER ROLE mlflow PASSWORD :'password';
SELECT 'CREATE DATABASE mlflow OWNER mlflow'
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'mlflow')\gexec
SQL
}

stop_db() {
  BIN=$(pg_bin)
  if running; then "$BIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null; fi
}

db_uri() {
  [[ -s $PASSWORD_FILE ]] || die "no database yet: bash tools/mlflow-server.sh start-db"
  echo "postgresql+psycopg2://mlflow:$(cat "$PASSWORD_FILE")@127.0.0.1:$PG_PORT/mlflow"
}

serve() {
  [[ -x $MLFLOW ]] || die "$MLFLOW missing: bash tools/setup.sh"
  start_db
  say "MLflow on http://127.0.0.1:$MLFLOW_PORT, database 127.0.0.1:$PG_PORT/mlflow, artifacts $ARTIFACTS"
  # The database URI (with its password) goes through the environment, not argv, which ps shows to
  # every user.
  MLFLOW_BACKEND_STORE_URI=$(db_uri)
  export MLFLOW_BACKEND_STORE_URI
  # MLflow's job runner (GenAI evaluation and trace jobs, which retraind never submits) is a dozen
  # more processes and about 2.5 GB of memory; set MLFLOW_SERVER_ENABLE_JOB_EXECUTION=true to have it.
  export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}
  exec "$MLFLOW" server \
    --artifacts-destination "$ARTIFACTS" --host 127.0.0.1 --port "$MLFLOW_PORT" \
    --workers "$WORKERS" --allowed-hosts "$ALLOWED_HOSTS"
}

case "${1:-}" in
  start-db) start_db ;;
  stop-db) stop_db ;;
  serve) serve ;;
  url) uri=$(db_uri); printf 'export MLFLOW_TRACKING_URI=%s\nexport MLFLOW_BACKEND_STORE_URI=%s\n' \
         "http://127.0.0.1:$MLFLOW_PORT" "$uri" ;;
  *) echo "usage: bash tools/mlflow-server.sh start-db | stop-db | serve | url" >&2; exit 2 ;;
esac
