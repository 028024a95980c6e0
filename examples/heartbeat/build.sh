#!/bin/sh
# Build heartbeat on a base that is verified first, then pinned by the digest
# that was verified (a tag could move between the check and the build):
#   examples/heartbeat/build.sh 127.0.0.1:5000/org/base-gosu:alpine heartbeat [docker build options]
# `invoke verify` checks the base's signatures, both attestations and gosu's
# sha256, and prints the digest its tag resolved to; any failure stops here.
# Whom it trusts is configuration: signing.trusted_keys, or signing.identity
# and signing.issuer for keyless (INVOKE_SIGNING_TRUSTED_KEYS=cosign.pub, ...).
# INVOKE names the command that runs invoke (default: ./run, from the project root).
set -eu
ref=$1
tag=$2
shift 2
here=$(dirname "$0")
report=$(${INVOKE:-./run} verify "$ref") || {
	printf '%s\n' "$report" >&2
	echo "build.sh: $ref did not verify; not building on it" >&2
	exit 1
}
printf '%s\n' "$report"
digest=$(printf '%s\n' "$report" | sed -n 's/^verify .* -> \(sha256:[0-9a-f]\{64\}\)$/\1/p')
[ -n "$digest" ] || { echo "build.sh: no digest in the verify report" >&2; exit 1; }
docker build "$@" --build-arg "BASE=${ref%:*}@$digest" --tag "$tag" "$here"
