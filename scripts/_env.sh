# Shared by scripts/demo and scripts/test: make sure uv exists, then install the locked environment
# (with PHLO_SYNC_EXTRA=bench also the bench extra: the tests run bench/run.py against its peers).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if ! command -v uv >/dev/null 2>&1; then
  python3 -m pip install --quiet "uv==0.13.9"
fi
export RUNTIME__DLTHUB_TELEMETRY=false
uv sync --frozen --quiet ${PHLO_SYNC_EXTRA:+--extra "$PHLO_SYNC_EXTRA"}
