#!/usr/bin/env bash
# Start a throwaway PostgreSQL server on loopback for the tests and print its SQLAlchemy URL.
# Installs Debian's postgresql package when it is missing. The server lives in a temp folder.
set -euo pipefail
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
fi
BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
PORT=${ESTAMPILLE_TEST_PG_PORT:-$(python3 -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")}
DIR=$(mktemp -d /tmp/estampille-pg.XXXXXX)
chown postgres "$DIR"
runuser -u postgres -- "$BIN/initdb" -D "$DIR/data" -A trust -U postgres >/dev/null
runuser -u postgres -- "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/log" -w \
  -o "-p $PORT -k $DIR -c listen_addresses=127.0.0.1" start >/dev/null
runuser -u postgres -- "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres estampille_test
echo "postgresql+psycopg://postgres@127.0.0.1:$PORT/estampille_test"
