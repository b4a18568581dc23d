#!/usr/bin/env bash
# `anycore loadgen` beside wrk on the same server and the same job: wrk's
# rate, loadgen's, their ratio (near 1 means loadgen measures the server,
# not itself), the server's memory before and after, and a counted run
# that must lose nothing.
#
#   cargo build --release && benches/loadgen.sh
#
# CONNS (128), SECONDS_EACH (10) and ANYCORE (target/release/anycore) may
# be set in the environment. Needs wrk (apt-get install wrk) and jq.
set -euo pipefail
cd "$(dirname "$0")/.."
ANYCORE=${ANYCORE:-target/release/anycore}
CONNS=${CONNS:-128}
SECONDS_EACH=${SECONDS_EACH:-10}
for tool in wrk jq "$ANYCORE"; do
    command -v "$tool" >/dev/null || { echo "loadgen.sh: $tool not found" >&2; exit 2; }
done

log=$(mktemp)
"$ANYCORE" serve --addr 127.0.0.1:0 2>"$log" &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; rm -f "$log"' EXIT
# At most 60 s for the server to say where it listens.
url=
for _ in $(seq 600); do
    url=$(grep -o 'http://[0-9.:]*' "$log" | head -n1 || true)
    [ -n "$url" ] && break
    kill -0 "$server" 2>/dev/null || { cat "$log" >&2; exit 1; }
    sleep 0.1
done
[ -n "$url" ] || { echo "loadgen.sh: the server did not start" >&2; cat "$log" >&2; exit 1; }
rss() { awk '/^VmRSS/ {print $2 " " $3}' "/proc/$server/status"; }

echo "server $url (pid $server), $(nproc) cores; $CONNS connections, ${SECONDS_EACH} s each"
echo "server RSS at start: $(rss)"
# Warm-up: the first requests meet cold caches and allocators.
"$ANYCORE" loadgen --url "$url" --jobs 2000 --concurrency "$CONNS" --json >/dev/null
echo "server RSS after warm-up: $(rss)"

echo "--- wrk -t1 -c$CONNS -d${SECONDS_EACH}s"
wrk_out=$(wrk -t1 -c"$CONNS" -d"${SECONDS_EACH}s" --latency -s benches/loadgen.lua "$url")
echo "$wrk_out"
wrk_rate=$(awk '/^Requests\/sec:/ {print $2}' <<<"$wrk_out")
if grep -q 'Non-2xx' <<<"$wrk_out"; then echo "warning: wrk saw non-2xx answers" >&2; fi
echo "server RSS after wrk: $(rss)"

echo "--- anycore loadgen --concurrency $CONNS --duration $SECONDS_EACH"
lg_out=$("$ANYCORE" loadgen --url "$url" --concurrency "$CONNS" --duration "$SECONDS_EACH" --json) \
    || echo "warning: loadgen reported failures" >&2
echo "$lg_out" | jq -c '{throughput_jobs_per_s, latency_ms, outcomes, verified}'
lg_rate=$(jq '.throughput_jobs_per_s | round' <<<"$lg_out")
echo "server RSS after loadgen: $(rss)"

echo "--- anycore loadgen --jobs 10000 --concurrency $CONNS"
counted=$("$ANYCORE" loadgen --url "$url" --jobs 10000 --concurrency "$CONNS" --json) || true
echo "$counted" | jq -c '{jobs, throughput_jobs_per_s, outcomes}'
lost=$(jq '.jobs - .outcomes.ok + .outcomes.wrong' <<<"$counted")
echo "server RSS at the end: $(rss)"

echo "=== wrk $wrk_rate req/s, loadgen $lg_rate jobs/s," \
    "loadgen/wrk $(awk -v a="$lg_rate" -v b="$wrk_rate" 'BEGIN {printf "%.2f", a / b}');" \
    "10000 counted jobs: $lost lost or wrong"
[ "$lost" = 0 ]
