#!/usr/bin/env bash
# Renders GET /status in a real headless Chromium (Debian's `chromium`) and checks what it drew.
#
#   scripts/status-page-chromium.sh [path/to/jarvis]
#
# Starts `jarvis serve` on a fresh SQLite file and a free port, posts two webhook fixtures (one of
# them malformed), loads /status?token=... in Chromium, then checks the rendered DOM (--dump-dom)
# for every section and the inline chart, takes a screenshot, and checks the service log never shows
# the token. Installs chromium with apt-get when it is missing. The binary defaults to
# target/release/jarvis, else target/debug/jarvis, else a debug build.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

if ! command -v chromium >/dev/null 2>&1; then
    echo "installing chromium (apt-get)" >&2
    if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi

bin="${1:-}"
if [ -z "$bin" ]; then
    if [ -x target/release/jarvis ]; then bin=target/release/jarvis
    elif [ -x target/debug/jarvis ]; then bin=target/debug/jarvis
    else cargo build -q -p jarvis-service && bin=target/debug/jarvis
    fi
fi

work="$(mktemp -d)"
jarvis_pid=""
cleanup() {
    if [ -n "$jarvis_pid" ]; then kill "$jarvis_pid" 2>/dev/null || true; wait "$jarvis_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
secret="status-page-check-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
token="status-token-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
base="http://127.0.0.1:$port"

env -i PATH="$PATH" \
    DATABASE_URL="sqlite://$work/jarvis.db" JARVIS_LISTEN="127.0.0.1:$port" \
    AMOCRM_WEBHOOK_SECRET="$secret" JARVIS_API_TOKEN="$token" JARVIS_BATCH_WINDOW_MS=20 \
    AMOCRM_RATE_PER_HOUR=7000 RUST_LOG=info \
    "$bin" serve >"$work/jarvis.log" 2>&1 &
jarvis_pid=$!

for _ in $(seq 1 100); do
    curl -fsS "$base/readyz" >/dev/null 2>&1 && break
    kill -0 "$jarvis_pid" 2>/dev/null || { cat "$work/jarvis.log" >&2; echo "jarvis exited" >&2; exit 1; }
    sleep 0.1
done
curl -fsS "$base/readyz" >/dev/null

post() {
    curl -sS -o /dev/null -w '%{http_code}' -X POST "$base/amocrm/webhook/$secret" \
        -H 'Content-Type: application/x-www-form-urlencoded' -H "X-Request-Id: $1" --data-binary "$2"
}
[ "$(post chromium-ok "@amocrm-webhook/tests/fixtures/leads_update_two.form")" = 200 ]
[ "$(post chromium-bad 'leads%5Bupdate%ZZ=1')" = 400 ]
# Let the worker process the two events, so the chart has both series.
for _ in $(seq 1 100); do
    curl -fsS -H "Authorization: Bearer $token" "$base/status" | grep -q 'id="backlog-count">0<' && break
    sleep 0.1
done

chromium_flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run
    --disable-background-networking --disable-component-update --disable-sync
    --window-size=1100,1400)
# A fresh profile for each run: nothing from an earlier one (cache, cookies) can help the page.
timeout 120 chromium "${chromium_flags[@]}" --user-data-dir="$work/profile-dom" \
    --dump-dom "$base/status?token=$token" \
    >"$work/dom.html" 2>"$work/chromium.log" || { cat "$work/chromium.log" >&2; exit 1; }
timeout 120 chromium "${chromium_flags[@]}" --user-data-dir="$work/profile-screenshot" \
    --screenshot="$work/status.png" "$base/status?token=$token" \
    >>"$work/chromium.log" 2>&1 || { cat "$work/chromium.log" >&2; exit 1; }

fail=0
check() { grep -q -- "$1" "$work/dom.html" || { echo "missing in the rendered page: $1" >&2; fail=1; }; }
for section in backlog rate deliveries dead api token worker gaps; do
    check "<section id=\"$section\">"
done
check '<title>Jarvis status</title>'
check 'id="backlog-count">0<'
check '<svg id="chart"'
check 'class="bar"'
check '<polyline'
check 'chromium-ok'
check 'chromium-bad'
check 'of 7000'
png_size="$(stat -c %s "$work/status.png" 2>/dev/null || echo 0)"
if [ "$png_size" -lt 10000 ]; then echo "screenshot missing or blank ($png_size bytes)" >&2; fail=1; fi
if grep -q -- "$token" "$work/jarvis.log"; then echo "the token appears in the service log" >&2; fail=1; fi
if grep -q -- "$secret" "$work/jarvis.log"; then echo "the webhook secret appears in the service log" >&2; fail=1; fi
if [ -n "${STATUS_SCREENSHOT:-}" ]; then cp "$work/status.png" "$STATUS_SCREENSHOT"; fi

if [ "$fail" -ne 0 ]; then
    echo "--- rendered DOM ---" >&2; cat "$work/dom.html" >&2
    exit 1
fi
echo "status page renders in $(chromium --version 2>/dev/null | head -n1): all sections, the chart, deliveries; screenshot ${png_size} bytes"
