#!/bin/sh
# A user-chosen server application for dsrconform labs: nginx answering what the suites'
# short connections ask (`GET /id`: 200, body "<server id>\n", header X-Server-Id).
#
#   dsrconform lab up labs/basic.yaml --server-command 'sh examples/servers/nginx.sh'
#
# The lab runs it on every server with DSRC_SERVER_ID, DSRC_HTTP (ADDR:PORT ... to listen on),
# DSRC_UDP and DSRC_DIR (a directory of its own) in the environment (docs/lab.md). nginx has
# no /stream of the project's pattern, so stream scenarios need the project's app.
set -eu
: "${DSRC_SERVER_ID:?}" "${DSRC_HTTP:?}" "${DSRC_DIR:?}"
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
conf="$DSRC_DIR/nginx.conf"
listen=""
for a in $DSRC_HTTP; do listen="$listen    listen $a reuseport;
"; done
mkdir -p "$DSRC_DIR/tmp"
cat >"$conf" <<CONF
worker_processes 1;
daemon off;
pid $DSRC_DIR/nginx.pid;
error_log $DSRC_DIR/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $DSRC_DIR/tmp/body;
    proxy_temp_path $DSRC_DIR/tmp/proxy;
    fastcgi_temp_path $DSRC_DIR/tmp/fastcgi;
    uwsgi_temp_path $DSRC_DIR/tmp/uwsgi;
    scgi_temp_path $DSRC_DIR/tmp/scgi;
    keepalive_timeout 60s;
    server {
$listen        default_type text/plain;
        location / {
            add_header X-Server-Id $DSRC_SERVER_ID always;
            return 200 "$DSRC_SERVER_ID\n";
        }
    }
}
CONF
exec "$NGINX" -c "$conf" -e "$DSRC_DIR/error.log"
