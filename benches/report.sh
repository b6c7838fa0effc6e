#!/usr/bin/env bash
# Prints the latest criterion results of Skein's benchmarks as a Markdown table: the median of
# each benchmark's time per iteration, its throughput, and for `.../log` next to `.../raw` the
# ratio log/raw of bytes per second. Needs `jq`. Run after `cargo bench -p skein-benches ...`.
#   bash benches/report.sh [GROUP...]    (default: every group under target/criterion)
set -euo pipefail
root="${CARGO_TARGET_DIR:-$(dirname "$0")/../target}/criterion"
groups=("$@")
if [ ${#groups[@]} -eq 0 ]; then
    mapfile -t groups < <(find "$root" -mindepth 1 -maxdepth 1 -type d ! -name report -printf '%f\n' | sort)
fi
human_rate() { # bytes/s or elements/s -> text
    awk -v r="$1" -v u="$2" 'BEGIN {
        if (u == "B") { s = "B/s"; if (r >= 1e9) printf "%.2f GB/s", r / 1e9; else printf "%.1f MB/s", r / 1e6 }
        else { if (r >= 1e6) printf "%.2f M/s", r / 1e6; else printf "%.1f K/s", r / 1e3 } }'
}
echo "| benchmark | median time / iter | throughput | log/raw |"
echo "| --- | ---: | ---: | ---: |"
for g in "${groups[@]}"; do
    while IFS= read -r est; do
        dir=$(dirname "$(dirname "$est")")
        id=$(jq -r '.full_id' "$dir/new/benchmark.json")
        ns=$(jq -r '.median.point_estimate' "$est")
        bytes=$(jq -r '.throughput.Bytes // empty' "$dir/new/benchmark.json")
        elems=$(jq -r '.throughput.Elements // empty' "$dir/new/benchmark.json")
        rate="" ratio=""
        if [ -n "$bytes" ]; then
            r=$(awk -v b="$bytes" -v ns="$ns" 'BEGIN { printf "%.0f", b / (ns / 1e9) }')
            rate=$(human_rate "$r" B)
        elif [ -n "$elems" ]; then
            r=$(awk -v b="$elems" -v ns="$ns" 'BEGIN { printf "%.0f", b / (ns / 1e9) }')
            rate="$(human_rate "$r" E) elements"
        fi
        if [ "$(basename "$dir")" = log ] && [ -f "$(dirname "$dir")/raw/new/estimates.json" ]; then
            raw_ns=$(jq -r '.median.point_estimate' "$(dirname "$dir")/raw/new/estimates.json")
            ratio=$(awk -v a="$ns" -v b="$raw_ns" 'BEGIN { printf "%.2f", b / a }')
        fi
        t=$(awk -v ns="$ns" 'BEGIN { if (ns >= 1e6) printf "%.3f ms", ns / 1e6; else if (ns >= 1e3) printf "%.2f µs", ns / 1e3; else printf "%.0f ns", ns }')
        echo "| \`$id\` | $t | $rate | $ratio |"
    done < <(find "$root/$g" -path '*/new/estimates.json' | sort)
done
