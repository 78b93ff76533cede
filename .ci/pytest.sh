#!/usr/bin/env bash
# Run the whole suite (slow, slurm and browser tests included). Exit code 5 (no tests collected) fails CI.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -x ../shared/slurm/start-local-slurm.sh ] && [ "$(id -u)" = 0 ] && ! sinfo >/dev/null 2>&1; then
  bash ../shared/slurm/start-local-slurm.sh >/tmp/mck-local-slurm.log 2>&1 \
    || echo "pytest.sh: local SLURM did not start (see /tmp/mck-local-slurm.log); slurm tests will skip" >&2
fi
.venv/bin/python -m pytest -q --durations=30 "$@"
rc=$?
if [ $rc -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi
exit $rc
