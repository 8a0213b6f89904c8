#!/bin/sh
# make_pki.sh DIR: create the throw-away test PKI used by the QRS simulator and
# the integration tests. Nothing here is ever committed: keys are made at test
# time. It mirrors what a QMC certificate export gives Butler (root.pem,
# client.pem, client_key.pem) plus the server side and the "bad" clients:
#
#   root.pem, root_key.pem                  site CA ("QlikServerCA-test")
#   server.pem, server_key.pem              SAN DNS:localhost, IP:127.0.0.1
#   client.pem, client_key.pem              CN=QlikClient, signed by the site CA
#   rogue_ca.pem, rogue_ca_key.pem          an unrelated CA
#   rogue_client.pem, rogue_client_key.pem  CN=QlikClient, signed by the rogue CA
#   expired_client.pem, expired_client_key.pem  site CA, valid 2020-01-01..2021-01-01
#
# Keys are unencrypted EC P-256 (fast handshakes). Idempotent: when every file
# already exists the script does nothing; otherwise it builds a complete new set
# in a scratch directory and moves it into DIR, so a half-written PKI is never
# left behind.
set -eu

if [ $# -ne 1 ]; then
    echo "usage: $0 DIR" >&2
    exit 2
fi
dir=$1
files="root.pem root_key.pem server.pem server_key.pem client.pem client_key.pem
rogue_ca.pem rogue_ca_key.pem rogue_client.pem rogue_client_key.pem
expired_client.pem expired_client_key.pem"

mkdir -p "$dir"
dir=$(cd "$dir" && pwd)  # absolute: the work below happens in a scratch directory
complete=1
for f in $files; do
    [ -s "$dir/$f" ] || complete=0
done
[ "$complete" = 1 ] && exit 0

work=$(mktemp -d "$dir/.pki.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
cd "$work"

# A private key and a CSR in one step.
newreq() { # name subject
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$1_key.pem" -out "$1.csr" -subj "$2" 2>/dev/null
}
# A self-signed CA.
newca() { # name subject
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$1_key.pem" -out "$1.pem" -days 3650 -subj "$2" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
}
# Sign a CSR with a CA for the given number of days and extension section.
sign() { # name ca extsection
    openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2_key.pem" \
        -set_serial "0x$(openssl rand -hex 8)" -days 825 -sha256 \
        -extfile ext.cnf -extensions "$3" -out "$1.pem" 2>/dev/null
}

cat > ext.cnf <<'EOF'
[server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,IP:127.0.0.1
[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
EOF

newca root "/CN=QlikServerCA-test"
newca rogue_ca "/CN=RogueCA-test"

newreq server "/CN=localhost"
sign server root server
newreq client "/CN=QlikClient"
sign client root client
newreq rogue_client "/CN=QlikClient"
sign rogue_client rogue_ca client

# OpenSSL 3.0's "x509 -req" cannot back-date a certificate; "openssl ca" can,
# given a minimal CA database.
newreq expired_client "/CN=QlikClient"
: > index.txt
cat > ca.cnf <<EOF
[ca]
default_ca = test_ca
[test_ca]
database = $work/index.txt
new_certs_dir = $work
serial = $work/serial
default_md = sha256
policy = any
unique_subject = no
[any]
commonName = supplied
EOF
openssl rand -hex 8 > serial
openssl ca -batch -config ca.cnf -cert root.pem -keyfile root_key.pem \
    -in expired_client.csr -out expired_client.pem -notext \
    -startdate 20200101000000Z -enddate 20210101000000Z \
    -extfile ext.cnf -extensions client 2>/dev/null

chmod 600 ./*_key.pem
for f in $files; do
    mv -f "$f" "$dir/$f"
done
