#!/bin/sh
# Runs inside the task root (as its /), offline: npm, from the registry's tarball of the
# version npm.txt pins (fetched outside: by the machine's npm locally, by the image's
# npm stage in job-runner/Dockerfile), checked against npm.txt's integrity, where npm's
# own installer puts it, for Debian's /usr/bin/node.
#   install-npm.sh TARBALL NPM_TXT
set -eu
tarball=$1
integrity=$(grep -v '^#' "$2" | cut -d' ' -f2)
case $integrity in
sha512-*) ;;
*) echo "install-npm.sh: no sha512 integrity in $2" >&2; exit 1 ;;
esac
# npm's integrity is the tarball's sha512 in base64; sha512sum takes it in hex.
digest=$(printf '%s' "${integrity#sha512-}" | base64 -d | od -An -v -tx1 | tr -d ' \n')
echo "$digest  $tarball" | sha512sum --check --quiet --strict
mkdir -p /usr/local/lib/node_modules/npm
tar -xzf "$tarball" -C /usr/local/lib/node_modules/npm --strip-components=1
ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm
ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx
# npm's own configuration file (its "builtin" one): no check for a newer npm, which
# would ask the registry and print a notice on every task's stderr (HOME is new each
# time), as Debian's npm does not either.
echo "update-notifier=false" >/usr/local/lib/node_modules/npm/npmrc
