#!/usr/bin/env bash
# Regenerates the development CA and the server certificate in this folder.
# For development only; see README.md here.
#
#   ./generate.sh                         # localhost, 127.0.0.1, ::1
#   ./generate.sh 192.168.1.20 box.local  # ... plus your LAN names and addresses
#
# The CA's private key is deleted at the end, and the CA is name-constrained to the
# names the certificate is for: trusting ca.pem can never make a machine trust a
# certificate for any other name, even though ca.pem is public.
set -euo pipefail
cd "$(dirname "$0")"

san="DNS:localhost,IP:127.0.0.1,IP:::1"
permitted="permitted;DNS:localhost,permitted;IP:127.0.0.1/255.255.255.255,permitted;IP:::1/ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
for name in "$@"; do
    if [[ $name =~ ^[0-9.]+$ ]]; then
        san+=",IP:$name"
        permitted+=",permitted;IP:$name/255.255.255.255"
    elif [[ $name == *:* ]]; then
        san+=",IP:$name"
        permitted+=",permitted;IP:$name/ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
    else
        san+=",DNS:$name"
        permitted+=",permitted;DNS:$name"
    fi
done

# The CA: ECDSA P-256, ten years.
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ca-key.pem
openssl req -x509 -new -key ca-key.pem -sha256 -days 3650 \
    -subj "/CN=switchboard development CA" \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -addext "nameConstraints=critical,$permitted" \
    -out ca.pem

# The server: ECDSA P-256 in PKCS#8 (what native-tls reads), 825 days, the most
# Apple platforms accept for a TLS server certificate.
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out localhost-key.pem
openssl req -new -key localhost-key.pem -subj "/CN=localhost" -out localhost.csr
cat > localhost.ext <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=$san
EXT
openssl x509 -req -in localhost.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial \
    -days 825 -sha256 -extfile localhost.ext -out localhost.pem
rm -f localhost.csr localhost.ext ca.srl ca-key.pem

openssl verify -CAfile ca.pem localhost.pem
