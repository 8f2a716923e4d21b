# exim-harness.sh - a throwaway real Exim on loopback for floodgate's e2e tests.
# Source it, then: eh_init || exit 77; eh_start; ...; (eh_stop runs from the EXIT trap).
#
# How Exim runs here (documented in tests/e2e/README.md):
# - `exim -C <our config> -bd -oX <port> -oP <pid file>`, started as root. The config is not
#   in Exim's TRUSTED_CONFIG_LIST (Debian builds none), so Exim gives up root at once and
#   the daemon runs as the Exim user (Debian-exim on Debian, exim on AlmaLinux, detected
#   with `exim -bP exim_user`). That is enough: the port is above 1024, and the spool and
#   log directories in our temp dir belong to that user. No system config is touched.
# - Root's queue commands (-bp, -Mf, -Mt) with the same -C work as an admin user.
# - Local submissions are made by root with `-oMt <login>`, Exim's documented way for a
#   trusted caller to set $sender_ident: a real other user cannot write our spool because
#   an untrusted -C makes Exim run as the caller.
# - Everything is loopback: listening on 127.0.0.1 only; remote deliveries go to a port
#   where nothing listens, and queue_only keeps every message queued anyway.

eh_log() { printf 'exim-harness: %s\n' "$*" >&2; }

# Find the binary and the Exim user. Returns 1 (caller skips) when Exim is not usable.
eh_init() {
    EH_EXIM=
    for b in /usr/sbin/exim4 /usr/sbin/exim "$(command -v exim 2>/dev/null)"; do
        if [ -n "$b" ] && [ -x "$b" ]; then EH_EXIM=$b; break; fi
    done
    [ -n "$EH_EXIM" ] || { eh_log "no exim binary"; return 1; }
    [ "$(id -u)" = 0 ] || { eh_log "needs root"; return 1; }
    EH_USER=$("$EH_EXIM" -bP exim_user 2>/dev/null | sed -n 's/^exim_user = //p')
    if [ -z "$EH_USER" ]; then
        for u in Debian-exim exim mailnull; do
            if id "$u" >/dev/null 2>&1; then EH_USER=$u; break; fi
        done
    fi
    [ -n "$EH_USER" ] || { eh_log "no exim user"; return 1; }
    EH_GROUP=$(id -gn "$EH_USER")
    EH_PY=/usr/bin/python3
    [ -x "$EH_PY" ] || EH_PY=$(command -v python3)
    EH_SWAKS=$(command -v swaks 2>/dev/null || true)
    return 0
}

eh_free_port() {
    "$EH_PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# eh_start: temp dir, config, daemon. Sets EH_DIR EH_CONF EH_PORT EH_SPOOL EH_LOG EH_LIST.
# EH_EXTRA_CONF, when set, is added to the main section as is (e.g.
# "helo_accept_junk_hosts = *", as cPanel sets it).
eh_start() {
    EH_DIR=$(mktemp -d /tmp/fg-e2e-exim.XXXXXX)
    chmod 0755 "$EH_DIR"
    EH_SPOOL=$EH_DIR/spool
    EH_LIST=$EH_DIR/etc/floodgate-blocklist
    mkdir -p "$EH_SPOOL" "$EH_DIR/log" "$EH_DIR/etc" "$EH_DIR/state"
    chown "$EH_USER:$EH_GROUP" "$EH_SPOOL" "$EH_DIR/log"
    EH_PORT=$(eh_free_port)
    EH_DEAD_PORT=$(eh_free_port)
    EH_CONF=$EH_DIR/exim.conf
    # Exim reads its config as its own user: a copy here, not the snippet in a source tree
    # that user may not reach (a clone in /root)
    install -m 0644 "$FG_SOURCE_DIR/conf/exim-acl.conf" "$EH_DIR/exim-acl.conf" || return 1
    cat > "$EH_CONF" <<CONF
# throwaway floodgate e2e configuration (tests/e2e/exim-harness.sh)
primary_hostname = fg-test.example
exim_user = $EH_USER
exim_group = $EH_GROUP
never_users = root
spool_directory = $EH_SPOOL
log_file_path = $EH_DIR/log/%slog
log_selector = +arguments +subject +received_recipients +all_parents +incoming_port \\
               +pid +smtp_connection +retry_defer
keep_environment =
tls_advertise_hosts =
host_lookup =
rfc1413_hosts =
queue_only = true
daemon_smtp_ports = $EH_PORT
local_interfaces = 127.0.0.1
domainlist local_domains = fg-test.example
hostlist relay_from_hosts = <; 127.0.0.1
auth_advertise_hosts = *
acl_smtp_rcpt = acl_check_rcpt
FLOODGATE_LIST = $EH_LIST
acl_not_smtp = acl_floodgate_not_smtp
${EH_EXTRA_CONF:-}

begin acl

.include $EH_DIR/exim-acl.conf

acl_check_rcpt:
  require acl = acl_floodgate_rcpt
  accept  authenticated = *
  accept  domains = +local_domains
  deny    message = relay not permitted

begin routers

remote:
  driver = manualroute
  domains = ! +local_domains
  route_list = * 127.0.0.1 byname
  self = send
  transport = remote_smtp

begin transports

remote_smtp:
  driver = smtp
  port = $EH_DEAD_PORT

begin retry

* * F,1h,1h

begin authenticators

plain:
  driver = plaintext
  public_name = PLAIN
  server_prompts = :
  server_condition = \${if eq{\$auth3}{fg-test-password}}
  server_set_id = \$auth2
  server_advertise_condition = true

login:
  driver = plaintext
  public_name = LOGIN
  server_prompts = Username:: : Password::
  server_condition = \${if eq{\$auth2}{fg-test-password}}
  server_set_id = \$auth1
  server_advertise_condition = true
CONF
    "$EH_EXIM" -C "$EH_CONF" -bV >/dev/null 2>"$EH_DIR/bV.err" ||
        { eh_log "config check failed"; cat "$EH_DIR/bV.err" >&2; return 1; }
    "$EH_EXIM" -C "$EH_CONF" -bd -oX "$EH_PORT" -oP "$EH_DIR/exim.pid"
    for _ in $(seq 1 50); do
        if [ -s "$EH_DIR/exim.pid" ] && "$EH_PY" -c "import socket,sys; socket.create_connection(('127.0.0.1',$EH_PORT),1)" 2>/dev/null; then
            eh_log "exim $EH_EXIM as $EH_USER listening on 127.0.0.1:$EH_PORT in $EH_DIR"
            return 0
        fi
        sleep 0.1
    done
    eh_log "exim daemon did not start"; cat "$EH_DIR"/log/* >&2 2>/dev/null
    return 1
}

eh_stop() {
    if [ -n "${EH_DIR:-}" ] && [ -s "$EH_DIR/exim.pid" ]; then
        kill "$(cat "$EH_DIR/exim.pid")" 2>/dev/null || true
    fi
    if [ -n "${EH_DIR:-}" ] && [ -d "$EH_DIR" ]; then
        if [ -n "${EH_KEEP:-}" ]; then eh_log "kept $EH_DIR"; else rm -rf "$EH_DIR"; fi
    fi
}

eh_exim() { "$EH_EXIM" -C "$EH_CONF" "$@"; }

# eh_submit_auth USER FROM TO SUBJECT [PLAIN|LOGIN]: SMTP AUTH over loopback.
# Prints "RCPT <code>" (and the queue id line); returns 0 accepted, 1 refused, 2 error.
eh_submit_auth() {
    local user=$1 from=$2 to=$3 subj=$4 mech=${5:-PLAIN} out
    if [ -n "$EH_SWAKS" ]; then
        out=$(timeout 30 "$EH_SWAKS" --server 127.0.0.1 --port "$EH_PORT" --helo e2e.test \
              --auth "$mech" --auth-user "$user" --auth-password fg-test-password \
              --from "$from" --to "$to" --h-Subject "$subj" --body 'floodgate e2e' 2>&1)
        local rc=$?
        printf '%s\n' "$out" | grep -E '^<(\*\*|-) +[245][0-9][0-9] ' | tail -n 2
        [ $rc = 0 ] && return 0
        printf '%s\n' "$out" | grep -qE '^<\*\* +[45][0-9][0-9] ' && return 1
        return 2
    fi
    timeout 30 "$EH_PY" "$FG_SOURCE_DIR/tests/e2e/smtp_submit.py" "$EH_PORT" "$user" \
        fg-test-password "$from" "$to" "$subj" "$mech"
}

# eh_submit_local LOGIN FROM TO SUBJECT: like sendmail -t run by LOGIN (see above).
eh_submit_local() {
    printf 'From: %s\nTo: %s\nSubject: %s\n\nfloodgate e2e local\n' "$2" "$3" "$4" |
        timeout 30 "$EH_EXIM" -C "$EH_CONF" -odq -oMt "$1" -f "$2" -t
}

# eh_msgid SUBJECT: the queue id of the arrival with that subject (from the main log).
eh_msgid() {
    grep -F " T=\"$1\"" "$EH_DIR/log/mainlog" | grep -F ' <= ' | head -n 1 |
        sed -E 's/^[0-9-]+ [0-9:.]+ (\[[0-9]+\] )?([0-9A-Za-z-]+) <= .*/\2/'
}

eh_queue() { eh_exim -bp; }

# eh_is_frozen ID: 0 when exim -bp shows the message frozen.
eh_is_frozen() { eh_exim -bp | grep -F " $1 " | grep -qF '*** frozen ***'; }
