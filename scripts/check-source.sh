#!/usr/bin/env bash
# Source rules CI enforces: every C file clang-formatted with the committed .clang-format,
# and none of the banned calls (strcpy, sprintf, strtok, atoi, gets, strcat, unbounded %s scanf).
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
files=$(git ls-files '*.c' '*.h')
for file in $files; do
  if ! clang-format --dry-run --Werror "$file" >/dev/null 2>&1; then
    echo "not clang-formatted: $file"
    status=1
  fi
done
if grep -nE '\b(strcpy|sprintf|vsprintf|strtok|atoi|atol|gets|strcat)[[:space:]]*\(' $files |
   grep -vE '\b(snprintf|vsnprintf)\b'; then
  echo "banned calls above"
  status=1
fi
if grep -nE 'scanf[[:space:]]*\([^;]*%s' $files; then
  echo "unbounded %s scanf above"
  status=1
fi
((status == 0)) && echo "source checks: formatted, no banned calls"
exit $status
