#!/usr/bin/env bash
# System packages that tests use for real: ffmpeg (compression), SLURM + munge (the local cluster).
# Best effort: installs only when root with apt and something is missing; tests needing them skip loudly otherwise.
set -uo pipefail
need=()
command -v ffmpeg >/dev/null 2>&1 || need+=(ffmpeg)
command -v slurmctld >/dev/null 2>&1 || need+=(slurm-wlm)
command -v munged >/dev/null 2>&1 || need+=(munge)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: cannot install ${need[*]} (need root and apt); tests that use them will be skipped" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
(apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null) \
  || echo "system-deps: apt-get install ${need[*]} failed; tests that use them will be skipped" >&2
exit 0
