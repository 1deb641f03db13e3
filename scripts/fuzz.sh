#!/usr/bin/env bash
# Fuzzes the webhook body parser (amocrm-webhook/fuzz, target `parse_body`) for N seconds (default 600).
#
#   scripts/fuzz.sh [seconds]
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). Only a stable toolchain is assumed, so
# RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its nightly flags. The corpus starts from the parser's
# fixtures and grows in amocrm-webhook/fuzz/corpus/parse_body; crashes land in
# amocrm-webhook/fuzz/artifacts/parse_body and make the script fail.
set -euo pipefail

seconds="${1:-600}"
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root/amocrm-webhook"

if ! cargo fuzz --help >/dev/null 2>&1; then
    echo "cargo-fuzz is missing: cargo install cargo-fuzz" >&2
    exit 2
fi

mkdir -p fuzz/corpus/parse_body
cp -n tests/fixtures/*.form fuzz/corpus/parse_body/ 2>/dev/null || true

RUSTC_BOOTSTRAP=1 cargo fuzz run parse_body -- \
    -max_total_time="$seconds" -max_len=4096 -print_final_stats=1
