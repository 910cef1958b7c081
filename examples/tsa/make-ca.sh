#!/bin/sh
# Make a throwaway test CA and a TSA certificate for the local TSA.
#   examples/tsa/make-ca.sh DIR
# Writes DIR/ca.pem (the root to trust: --tsa-root DIR/ca.pem), DIR/tsa.pem,
# DIR/tsa.key and DIR/serial. For tests and demos only: the keys are not
# encrypted and the CA signs whatever this script tells it to.
set -eu
dir=${1:?usage: make-ca.sh DIR}
mkdir -p "$dir"
cd "$dir"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout ca.key -out ca.pem -days 3650 -subj "/CN=Evidence Demo Root CA" \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout tsa.key -out tsa.csr -subj "/CN=Evidence Demo TSA" 2>/dev/null
# RFC 3161 section 2.3: the TSA certificate's only extended key usage is
# timeStamping, marked critical (rfc3161-client refuses anything else).
cat > tsa-ext.cnf <<'EXT'
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = critical,timeStamping
EXT
openssl x509 -req -in tsa.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
    -out tsa.pem -days 3650 -extfile tsa-ext.cnf 2>/dev/null
rm -f tsa.csr tsa-ext.cnf
echo 01 > serial
echo "test CA in $dir: trust $dir/ca.pem"
