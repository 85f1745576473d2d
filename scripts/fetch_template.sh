#!/usr/bin/env bash
# Fetch LM Studio's official backend pack NAME@VERSION from LM Studio's public download location
# (https://extensions.lmstudio.ai/backend-<name>-<version>.tar.gz, docs/lmstudio-contract.md §3), refuse it unless
# its sha256 is pinned in .github/backend-templates.sha256 and matches, unpack it under DEST and print the backend
# folder. Used by .github/workflows/backends.yml; tests/test_workflows.py runs it against a loopback server.
#   LMS_TEMPLATE_BASE_URL  another download location (tests, mirrors)
#   LMS_TEMPLATE_PINS      another pin file
set -euo pipefail
if [ $# -ne 3 ]; then echo "usage: $0 NAME VERSION DEST" >&2; exit 2; fi
name=$1 version=$2 dest=$3
base=${LMS_TEMPLATE_BASE_URL:-https://extensions.lmstudio.ai}
pins=${LMS_TEMPLATE_PINS:-.github/backend-templates.sha256}
file="backend-$name-$version.tar.gz"
pin=$(awk -v f="$file" '$2 == f && $1 ~ /^[0-9a-f]+$/ && length($1) == 64 { print; exit }' "$pins")
if [ -z "$pin" ]; then
  echo "::error::$file is not pinned in $pins (download it once from a trusted machine, add its sha256, review)" >&2
  exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
curl -fsSL --retry 3 -o "$tmp/$file" "$base/$file"
if ! (cd "$tmp" && printf '%s\n' "$pin" | sha256sum -c --quiet - >/dev/null 2>&1); then
  echo "::error::$file does not have the pinned sha256 $(cut -c1-64 <<<"$pin")" >&2
  exit 1
fi
mkdir -p "$dest/$name-$version"
tar -xzf "$tmp/$file" --no-same-owner -C "$dest/$name-$version"
manifest=$(find "$dest/$name-$version" -name backend-manifest.json -print | sort | head -n 1)
if [ -z "$manifest" ]; then echo "::error::$file holds no backend-manifest.json" >&2; exit 1; fi
dirname "$manifest"
