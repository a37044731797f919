#!/usr/bin/env bash
# Credentials for the production broker profile (mosquitto-prod.conf + acl). Nothing this script writes belongs in git:
# keep DIR outside the repository (default .gitignore rules also ignore broker/secrets/, *.key, *.crt, passwd).
#
#   credentials.sh ca DIR [NAME...]      development CA and a broker certificate for localhost, 127.0.0.1 and NAMEs;
#                                        where absent, an empty DIR/passwd and the shipped acl as DIR/acl, so that
#                                        mosquitto-prod.conf starts with DIR as its /etc/mosquitto/iotdsd/
#   credentials.sh client DIR ID         client certificate DIR/ID.crt + DIR/ID.key with CN=ID (the MQTT user name)
#   credentials.sh password DIR ID       add or replace ID in DIR/passwd; the password is read from IOTDSD_NEW_PASSWORD
#                                        or generated and printed once
#   credentials.sh verifier DIR ID       append verifier ID's topic rights to DIR/acl (copied from broker/acl if absent)
#   credentials.sh operator DIR ID       append operator ID's rights (iotdsd diag: every presence and metrics topic,
#                                        diagnostic commands) to DIR/acl; then give ID a client certificate or password
#
# Keys are EC P-256. Private keys are created mode 0600.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cmd="${1:-}"; dir="${2:-}"
[ -n "$cmd" ] && [ -n "$dir" ] || { sed -n '2,15p' "$0" >&2; exit 2; }
mkdir -p "$dir"
umask 077

valid_id() { [[ "$1" =~ ^[A-Za-z0-9_.-]{1,64}$ ]] || { echo "credentials.sh: id '$1' must be 1-64 characters of A-Z a-z 0-9 _ . -" >&2; exit 2; }; }

case "$cmd" in
  ca)
    shift 2
    [ -f "$dir/ca.key" ] || openssl ecparam -name prime256v1 -genkey -noout -out "$dir/ca.key"
    [ -f "$dir/ca.crt" ] || openssl req -x509 -new -key "$dir/ca.key" -sha256 -days 825 -subj "/CN=IotDsd development CA" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" -out "$dir/ca.crt" 2>/dev/null
    san="DNS:localhost,IP:127.0.0.1,IP:::1"
    for name in "$@"; do
      if [[ "$name" =~ ^[0-9.]+$ || "$name" == *:* ]]; then san="$san,IP:$name"; else san="$san,DNS:$name"; fi
    done
    openssl ecparam -name prime256v1 -genkey -noout -out "$dir/server.key"
    openssl req -new -key "$dir/server.key" -subj "/CN=${1:-localhost}" -out "$dir/server.csr" 2>/dev/null
    printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' "$san" > "$dir/server.ext"
    openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial -days 397 -sha256 \
      -extfile "$dir/server.ext" -out "$dir/server.crt" 2>/dev/null
    rm -f "$dir/server.csr" "$dir/server.ext"
    chmod 644 "$dir/ca.crt" "$dir/server.crt"
    # mosquitto-prod.conf names both files; without them the broker does not start.
    [ -f "$dir/passwd" ] || : > "$dir/passwd"
    [ -f "$dir/acl" ] || { cp "$here/acl" "$dir/acl"; chmod 644 "$dir/acl"; }
    echo "CA $dir/ca.crt, broker certificate $dir/server.crt for $san; ACL $dir/acl, password file $dir/passwd"
    ;;
  client)
    id="${3:-}"; valid_id "$id"
    [ -f "$dir/ca.key" ] || { echo "credentials.sh: no CA in $dir; run: credentials.sh ca $dir" >&2; exit 2; }
    openssl ecparam -name prime256v1 -genkey -noout -out "$dir/$id.key"
    openssl req -new -key "$dir/$id.key" -subj "/CN=$id" -out "$dir/$id.csr" 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n' > "$dir/$id.ext"
    openssl x509 -req -in "$dir/$id.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial -days 397 -sha256 \
      -extfile "$dir/$id.ext" -out "$dir/$id.crt" 2>/dev/null
    rm -f "$dir/$id.csr" "$dir/$id.ext"
    chmod 644 "$dir/$id.crt"
    echo "client certificate $dir/$id.crt (CN=$id), key $dir/$id.key"
    ;;
  password)
    id="${3:-}"; valid_id "$id"
    password="${IOTDSD_NEW_PASSWORD:-}"
    generated=0
    if [ -z "$password" ]; then password="$(openssl rand -base64 24)"; generated=1; fi
    [ -f "$dir/passwd" ] || : > "$dir/passwd"
    mosquitto_passwd -b "$dir/passwd" "$id" "$password"
    if [ "$generated" = 1 ]; then echo "user $id password $password (shown once)"; else echo "user $id added to $dir/passwd"; fi
    ;;
  verifier)
    id="${3:-}"; valid_id "$id"
    [ -f "$dir/acl" ] || { cp "$here/acl" "$dir/acl"; chmod 644 "$dir/acl"; }
    if grep -qx "user $id" "$dir/acl"; then echo "verifier $id already in $dir/acl"; exit 0; fi
    printf '\nuser %s\ntopic write iotdsd/v1/verifiers/%s/status\ntopic read iotdsd/v1/verifiers/%s/rounds/+\ntopic write iotdsd/v1/devices/+/replies\n' \
      "$id" "$id" "$id" >> "$dir/acl"
    printf 'topic write iotdsd/v1/verifiers/%s/metrics\ntopic read iotdsd/v1/verifiers/%s/cmd\n' "$id" "$id" >> "$dir/acl"
    echo "verifier $id may now serve rounds (ACL $dir/acl)"
    ;;
  operator)
    id="${3:-}"; valid_id "$id"
    [ -f "$dir/acl" ] || { cp "$here/acl" "$dir/acl"; chmod 644 "$dir/acl"; }
    if grep -qx "user $id" "$dir/acl"; then echo "user $id already in $dir/acl"; exit 0; fi
    {
      printf '\nuser %s\n' "$id"
      printf 'topic read iotdsd/v1/devices/+/status\ntopic read iotdsd/v1/devices/+/metrics\ntopic read iotdsd/v1/verifiers/+/metrics\n'
      printf 'topic write iotdsd/v1/devices/+/cmd\ntopic write iotdsd/v1/verifiers/+/cmd\ntopic read iotdsd/v1/diag/+/replies\n'
    } >> "$dir/acl"
    echo "operator $id may now run iotdsd diag (ACL $dir/acl); give it a client certificate (credentials.sh client $dir $id) or a password (credentials.sh password $dir $id)"
    ;;
  *) sed -n '2,15p' "$0" >&2; exit 2 ;;
esac
