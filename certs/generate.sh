#!/usr/bin/env bash
# Makes a new development CA and server certificate. For development only; see
# README.md here.
#
#   certs/generate.sh                           # localhost, 127.0.0.1, ::1, into certs/generated/
#   certs/generate.sh 192.168.1.20 box.local    # ... plus your LAN names and addresses
#   certs/generate.sh --out DIR 192.168.1.20    # into DIR (created if missing)
#   certs/generate.sh --replace-dev             # over the committed certs/*.pem, which
#                                               # the binary builds in (undo: git checkout -- certs/)
#
# It writes ca.pem, localhost.pem and localhost-key.pem, and refuses to overwrite any
# of them unless --replace-dev names the committed set: a set the browsers already
# trust is not replaced by accident. The new files appear only once the whole set is
# made and verified.
#
# The CA's private key is deleted at the end, and the CA is name-constrained to the
# names the certificate is for: trusting ca.pem can never make a machine trust a
# certificate for any other name, even though ca.pem is public.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd -P)
files=(ca.pem localhost.pem localhost-key.pem)

usage() {
    sed -n '2,14s/^# \{0,1\}//p' "$0"
}

out=
replace_dev=
while [[ $# -gt 0 ]]; do
    case $1 in
        --out)
            [[ $# -ge 2 && -n $2 ]] || { echo "generate.sh: --out needs a directory" >&2; exit 2; }
            out=$2
            shift 2
            ;;
        --out=*)
            out=${1#--out=}
            [[ -n $out ]] || { echo "generate.sh: --out needs a directory" >&2; exit 2; }
            shift
            ;;
        --replace-dev)
            replace_dev=1
            shift
            ;;
        -h | --help)
            usage
            exit 0
            ;;
        --)
            shift
            break
            ;;
        -*)
            echo "generate.sh: unknown option $1 (see --help)" >&2
            exit 2
            ;;
        *) break ;;
    esac
done

if [[ -n $replace_dev && -n $out ]]; then
    echo "generate.sh: --out and --replace-dev exclude each other" >&2
    exit 2
fi

san="DNS:localhost,IP:127.0.0.1,IP:::1"
permitted="permitted;DNS:localhost,permitted;IP:127.0.0.1/255.255.255.255,permitted;IP:::1/ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
for name in "$@"; do
    # Letters, digits, dots, hyphens and colons only: anything else would be read as
    # OpenSSL configuration (a comma starts another name).
    if [[ ! $name =~ ^[A-Za-z0-9.:-]+$ ]]; then
        echo "generate.sh: not a host name or IP address: '$name'" >&2
        exit 2
    fi
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

if [[ -n $replace_dev ]]; then
    out=$here
else
    if [[ -z $out ]]; then
        out=$here/generated
    fi
    mkdir -p "$out"
    out=$(cd "$out" && pwd -P)
    if [[ $out == "$here" ]]; then
        echo "generate.sh: $out holds the committed development set; pass --replace-dev to overwrite it" >&2
        exit 2
    fi
    for file in "${files[@]}"; do
        if [[ -e $out/$file ]]; then
            echo "generate.sh: $out/$file exists; remove it or pass --out with another directory" >&2
            exit 2
        fi
    done
    # The default directory sits inside the repository: keep its private key out of
    # commits.
    if [[ $out == "$here/generated" && ! -e $out/.gitignore ]]; then
        printf '*\n' >"$out/.gitignore"
    fi
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

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
cat >localhost.ext <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=$san
EXT
openssl x509 -req -in localhost.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial \
    -days 825 -sha256 -extfile localhost.ext -out localhost.pem
rm -f ca-key.pem

openssl verify -CAfile ca.pem localhost.pem
for file in "${files[@]}"; do
    cp "$file" "$out/$file"
done
echo "Wrote ${files[*]} to $out"
