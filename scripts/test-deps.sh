#!/usr/bin/env bash
# Installs what the test suite needs on a fresh machine; idempotent and quiet when all is present.
set -euo pipefail
need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v kcat >/dev/null 2>&1 || need_apt+=(kcat)
# docker-compose (v1, Debian's) validates docker-compose.yml against the Compose schema with no
# Docker engine: config/compose_test.go runs `docker-compose config`.
command -v docker-compose >/dev/null 2>&1 || need_apt+=(docker-compose)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v unshare >/dev/null 2>&1 || need_apt+=(util-linux)
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq >/dev/null && $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# --- dynalite (DynamoDB-compatible server for sinks/store/dynamostore) ---------------------------
# Installed under .cache/npm in the repository (git-ignored), where internal/testsvc looks for it;
# the version matches testsvc.DynaliteVersion.
DYNALITE_VERSION=4.0.0
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if ! command -v dynalite >/dev/null 2>&1 && [ ! -x "$repo_root/.cache/npm/node_modules/.bin/dynalite" ]; then
  if ! command -v npm >/dev/null 2>&1; then
    SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq >/dev/null && $SUDO apt-get install -y -qq nodejs npm >/dev/null
  fi
  npm install --prefix "$repo_root/.cache/npm" --no-audit --no-fund --silent "dynalite@$DYNALITE_VERSION" >/dev/null
fi
# --- end dynalite --------------------------------------------------------------------------------

# --- versitygw (S3-compatible server for sinks/blob) ---------------------------------------------
# Installed with `go install` into GOBIN (or GOPATH/bin), where internal/testsvc looks for it; the
# version matches testsvc.VersityGWVersion.
VERSITYGW_VERSION=v1.8.0
gobin="$(go env GOBIN)"; [ -n "$gobin" ] || gobin="$(go env GOPATH | cut -d: -f1)/bin"
if ! command -v versitygw >/dev/null 2>&1 && [ ! -x "$gobin/versitygw" ]; then
  GOFLAGS=-buildvcs=false go install "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION"
fi
# --- end versitygw -------------------------------------------------------------------------------

# --- local-kms (AWS KMS emulator for crypto/kmsaws and the multi-process tests) -----------------
# It listens on every interface; internal/testsvc runs it only inside a loopback-only network
# namespace. The version matches testsvc.LocalKMSVersion.
LOCALKMS_VERSION=v0.0.0-20260228092603-2a5e92d09ab6
if ! command -v local-kms >/dev/null 2>&1 && [ ! -x "$gobin/local-kms" ]; then
  GOFLAGS=-buildvcs=false go install "github.com/nsmithuk/local-kms@$LOCALKMS_VERSION"
fi
# --- end local-kms -------------------------------------------------------------------------------
