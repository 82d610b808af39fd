#!/usr/bin/env bash
# Open the orin-unlearn kiosk page full screen once the local server answers.
#
#   orin-unlearn-kiosk-browser [URL]      (default http://127.0.0.1:8000/)
#
# Started from the desktop session's autostart entry (jetson/kiosk-browser.desktop, installed by
# `install-service.sh --kiosk-user USER`). Waits up to 10 minutes for URL/healthz, because the
# service may still be loading its engine after boot, then replaces itself with Chromium in kiosk
# mode (full screen, no address bar, no first-run or crash dialogs).
set -euo pipefail

URL="${1:-http://127.0.0.1:8000/}"
WAIT_SECONDS="${ORIN_UNLEARN_KIOSK_WAIT:-600}"

browser=""
for candidate in chromium chromium-browser google-chrome; do
    if command -v "$candidate" >/dev/null 2>&1; then
        browser="$candidate"
        break
    fi
done
if [ -z "$browser" ]; then
    echo "kiosk-browser: no Chromium found; install it with: sudo snap install chromium" >&2
    exit 1
fi

healthy() {
    python3 - "$URL" <<'PY'
import sys, urllib.request
try:
    urllib.request.urlopen(sys.argv[1].rstrip("/") + "/healthz", timeout=2)
except Exception:
    sys.exit(1)
PY
}

waited=0
until healthy; do
    if [ "$waited" -ge "$WAIT_SECONDS" ]; then
        echo "kiosk-browser: $URL did not answer in ${WAIT_SECONDS}s; see journalctl -u orin-unlearn-kiosk" >&2
        exit 1
    fi
    sleep 2
    waited=$((waited + 2))
done

exec "$browser" --kiosk --noerrdialogs --disable-infobars --no-first-run \
    --disable-session-crashed-bubble --disable-features=Translate "$URL"
