#!/usr/bin/env bash
# Makes the lab's TLS identity for the storage API once per machine: a CA and a
# server certificate for the lab storage host (10.77.0.11, 127.0.0.1). Kept
# beside the cached lab images so that golden images, which hold the CA, are
# built once rather than at every run. Lab use only.
# Usage: lab-tls.sh [DIR]   (default /var/cache/clusterducks-lab/lab-tls); prints DIR.
set -euo pipefail
dir=${1:-${CDLAB_CACHE:-/var/cache/clusterducks-lab}/lab-tls}
if [ ! -s "$dir/server.crt" ]; then
    umask 077
    rm -rf "$dir.tmp"
    mkdir -p "$dir.tmp"
    cd "$dir.tmp"
    openssl ecparam -name prime256v1 -genkey -noout -out ca.key
    openssl req -x509 -new -key ca.key -sha256 -days 3650 -subj /CN=clusterducks-lab-ca -out ca.crt
    openssl ecparam -name prime256v1 -genkey -noout -out server.key
    openssl req -new -key server.key -subj /CN=storage -out server.csr
    printf 'subjectAltName=IP:10.77.0.11,IP:127.0.0.1,DNS:storage\nextendedKeyUsage=serverAuth\n' > ext.cnf
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -sha256 -days 3650 \
        -extfile ext.cnf -out server.crt 2> /dev/null
    chmod 0644 ca.crt server.crt
    mv "$dir.tmp" "$dir"
fi
echo "$dir"
