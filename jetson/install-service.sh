#!/usr/bin/env bash
# Install and start the orin-unlearn kiosk service (jetson/orin-unlearn-kiosk.service) on a Jetson.
#
#   sudo jetson/install-service.sh [--model DIR] [--bundle DIR] [--venv DIR] [--user NAME] [--port N]
#                                  [--memory-max SIZE] [--kiosk-user USER] [--trust-key PUB] [--dry-run]
#
# What it does, in order (--dry-run prints each step and the rendered unit, and changes nothing):
#   0. checks what the unit checks before each start, when the venv is there (in a dry run too: it
#      only reads): the bundle under the trusted key, and --model tied to it (a stage of it, or an
#      engine built from its graph); a stale engine is refused with the command that rebuilds it;
#   1. renders the unit: service user, venv, --model, --port, the unpacked bundle checked before
#      each start (--bundle, default /opt/orin-unlearn/demo) and MemoryMax from the options, and
#      ORIN_UNLEARN_TRUST_KEY=/etc/orin-unlearn/trusted.pub when a trusted bundle key is installed;
#   2. creates the unprivileged system user (home /var/lib/orin-unlearn, no login shell) and adds
#      it to the video group, which owns the GPU's device nodes on L4T;
#   3. with --trust-key PUB: installs that public key (orin-unlearn keys new) as
#      /etc/orin-unlearn/trusted.pub, so bundles must be signed by its private key; then installs
#      the unit as /etc/systemd/system/orin-unlearn-kiosk.service, reloads systemd, enables it at
#      boot and (re)starts it;
#   4. with --kiosk-user USER: installs jetson/kiosk-browser.sh as
#      /usr/local/bin/orin-unlearn-kiosk-browser and an autostart entry in USER's desktop session,
#      so the kiosk page opens full screen in Chromium after that user logs in.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
UNIT_NAME=orin-unlearn-kiosk.service
UNIT_DIR=/etc/systemd/system
MODEL=/opt/orin-unlearn/engine
BUNDLE=/opt/orin-unlearn/demo
VENV=/opt/orin-unlearn/venv
SERVICE_USER=orin-unlearn
PORT=8000
MEMORY_MAX=80%
KIOSK_USER=""
TRUST_KEY=""
TRUSTED=/etc/orin-unlearn/trusted.pub
DRY_RUN=0

usage() {
    sed -n '2,6p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

die() {
    echo "install-service.sh: $*" >&2
    exit 1
}

# Print a command, then run it unless this is a dry run.
run() {
    echo "+ $*"
    if [ "$DRY_RUN" -eq 0 ]; then
        "$@"
    fi
}

while [ $# -gt 0 ]; do
    case "$1" in
        --model) MODEL="${2:?--model needs a folder}"; shift 2 ;;
        --bundle) BUNDLE="${2:?--bundle needs a folder}"; shift 2 ;;
        --venv) VENV="${2:?--venv needs a folder}"; shift 2 ;;
        --user) SERVICE_USER="${2:?--user needs a name}"; shift 2 ;;
        --port) PORT="${2:?--port needs a number}"; shift 2 ;;
        --memory-max) MEMORY_MAX="${2:?--memory-max needs a size such as 6G or 80%}"; shift 2 ;;
        --kiosk-user) KIOSK_USER="${2:?--kiosk-user needs a login name}"; shift 2 ;;
        --trust-key) TRUST_KEY="${2:?--trust-key needs a public key file}"; shift 2 ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; echo "unknown option: $1" >&2; exit 2 ;;
    esac
done

case "$PORT" in
    '' | *[!0-9]*) die "--port must be a number, got '$PORT'" ;;
esac
[ -f "$HERE/$UNIT_NAME" ] || die "cannot find $HERE/$UNIT_NAME"
if [ -n "$TRUST_KEY" ]; then
    [ -f "$TRUST_KEY" ] || die "--trust-key: no such file: $TRUST_KEY"
    if grep -q "PRIVATE KEY" "$TRUST_KEY"; then
        die "--trust-key: $TRUST_KEY is a private key; copy only the .pub to the Jetson"
    fi
    grep -q "BEGIN PUBLIC KEY" "$TRUST_KEY" || die "--trust-key: $TRUST_KEY is not a PEM public key"
fi
TRUST_LINE="s|^#Environment=ORIN_UNLEARN_TRUST_KEY=.*|&|"  # off: no key installed
if [ -n "$TRUST_KEY" ] || [ -f "$TRUSTED" ]; then
    TRUST_LINE="s|^#Environment=ORIN_UNLEARN_TRUST_KEY=.*|Environment=ORIN_UNLEARN_TRUST_KEY=$TRUSTED|"
fi
if [ "$DRY_RUN" -eq 0 ]; then
    [ "$(id -u)" -eq 0 ] || die "run as root (sudo), or pass --dry-run to see what it would do"
    [ -x "$VENV/bin/orin-unlearn" ] || die "$VENV/bin/orin-unlearn is missing: run jetson/install.sh first"
    [ -d "$MODEL" ] || die "$MODEL does not exist: unpack a bundle and build the engine first (jetson/README.md)"
    [ -f "$BUNDLE/bundle.json" ] || die "$BUNDLE holds no unpacked bundle (--bundle DIR; jetson/README.md)"
    [ -n "$TRUST_KEY" ] || [ -f "$TRUSTED" ] \
        || die "no trusted bundle key: pass --trust-key PUB (the unit's bundle --verify needs one)"
fi

echo "# 0. the bundle and what the unit serves, as the unit checks them before each start"
if [ -x "$VENV/bin/orin-unlearn" ]; then
    CHECK=("$VENV/bin/orin-unlearn" bundle --verify "$BUNDLE" --model "$MODEL")
    if [ -n "$TRUST_KEY" ]; then
        CHECK+=(--trust "$TRUST_KEY")
    fi
    echo "check: ${CHECK[*]}"
    "${CHECK[@]}" || die "the kiosk would not start: $MODEL is not covered by the bundle in $BUNDLE" \
        "(the line above says why; for a stale engine, which command rebuilds it)"
else
    echo "skipped: $VENV/bin/orin-unlearn is not installed yet"
fi

echo "# 1. the unit, rendered"
RENDERED="$(sed \
    -e "s|^User=.*|User=$SERVICE_USER|" \
    -e "s|^Group=.*|Group=$SERVICE_USER|" \
    -e "/^Exec/s|/opt/orin-unlearn/venv|$VENV|g" \
    -e "/^ExecStart=/s|--model [^ ]*|--model $MODEL|" \
    -e "/^ExecStartPre=.*bundle --verify/s|--verify [^ ]*|--verify $BUNDLE|" \
    -e "/^ExecStartPre=.*bundle --verify/s|--model [^ ]*|--model $MODEL|" \
    -e "/^ExecStart=/s|--port [0-9]*|--port $PORT|" \
    -e "s|^MemoryMax=.*|MemoryMax=$MEMORY_MAX|" \
    -e "$TRUST_LINE" \
    "$HERE/$UNIT_NAME")"
echo "$RENDERED"

echo "# 2. the service user"
if id -u "$SERVICE_USER" >/dev/null 2>&1; then
    echo "user $SERVICE_USER exists"
else
    run useradd --system --user-group --home-dir /var/lib/orin-unlearn --no-create-home \
        --shell /usr/sbin/nologin "$SERVICE_USER"
fi
run usermod -a -G video "$SERVICE_USER"

echo "# 3. the trusted bundle key and the unit"
if [ -n "$TRUST_KEY" ]; then
    run install -D -m 0644 "$TRUST_KEY" "$TRUSTED"
elif [ ! -f "$TRUSTED" ]; then
    echo "no trusted bundle key ($TRUSTED): unpacking checks checksums only (--trust-key PUB)"
fi
TMP_UNIT="$(mktemp)"
trap 'rm -f "$TMP_UNIT"' EXIT
printf '%s\n' "$RENDERED" >"$TMP_UNIT"
run install -m 0644 "$TMP_UNIT" "$UNIT_DIR/$UNIT_NAME"
run systemctl daemon-reload
run systemctl enable "$UNIT_NAME"
run systemctl restart "$UNIT_NAME"

if [ -n "$KIOSK_USER" ]; then
    echo "# 4. the kiosk browser for $KIOSK_USER"
    HOME_DIR="$(getent passwd "$KIOSK_USER" | cut -d: -f6 || true)"
    if [ -z "$HOME_DIR" ]; then
        [ "$DRY_RUN" -eq 1 ] || die "no such user: $KIOSK_USER"
        HOME_DIR="/home/$KIOSK_USER"
    fi
    TMP_DESKTOP="$(mktemp)"
    trap 'rm -f "$TMP_UNIT" "$TMP_DESKTOP"' EXIT
    sed "s|http://127.0.0.1:8000/|http://127.0.0.1:$PORT/|" "$HERE/kiosk-browser.desktop" >"$TMP_DESKTOP"
    run install -m 0755 "$HERE/kiosk-browser.sh" /usr/local/bin/orin-unlearn-kiosk-browser
    run install -d -o "$KIOSK_USER" -m 0755 "$HOME_DIR/.config" "$HOME_DIR/.config/autostart"
    run install -o "$KIOSK_USER" -m 0644 "$TMP_DESKTOP" "$HOME_DIR/.config/autostart/orin-unlearn-kiosk.desktop"
fi

if [ "$DRY_RUN" -eq 1 ]; then
    echo "dry run: nothing was changed"
else
    echo "done: the kiosk answers on http://127.0.0.1:$PORT/ ; logs: journalctl -u ${UNIT_NAME%.service} -f"
fi
