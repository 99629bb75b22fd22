#!/usr/bin/env bash
# Runs every benchmark in bench/ once, one after the other (each prints its own table), keeps each
# one's output in a results directory and ends with a digest: per bench its status, its wall time
# and the lines of its output that carry targets and ratios.
#
#   bash bench/run-all.sh [--quick] [--out DIR] [--only NAME[,NAME...]]
#
# --quick  smaller sizes and fewer rounds, for a busy or small machine (each bench a few minutes)
# --out    results directory (default: a new directory under ${TMPDIR:-/tmp})
# --only   run only these benches (names without .ts: layers,push,stack,sandbox,phases,...)
# Per-bench arguments can be replaced through KILN_BENCH_<NAME>_ARGS, e.g.
#   KILN_BENCH_LAYERS_ARGS="--size-mb 300 --runs 1" bash bench/run-all.sh --only layers
# Needs what the benches need: root, bubblewrap, skopeo, docker-registry, mmdebstrap and buildah
# (Debian: apt-get install -y mmdebstrap buildah); a bench whose tool is missing says so and fails
# on its own, the others still run.
set -u -o pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
quick=0
out=""
only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --out) out=$2; shift ;;
    --only) only=$2; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "run-all.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

cd "$root" || exit 1
# shellcheck source=/dev/null
. scripts/node.sh

for tool in mmdebstrap buildah skopeo docker-registry bwrap; do
  command -v "$tool" >/dev/null || echo "note: $tool is not installed (apt-get install -y $tool); the bench that compares with it will fail" >&2
done

# Default arguments: the sizes the targets are set for; --quick: sizes that finish in a few minutes each
# on a loaded 2-core machine.
declare -A full=(
  [layers]="--size-mb 500 --runs 2"
  [push]="--size-mb 300 --rounds 3"
  [stack]="--rounds 1"
  [sandbox]="50"
  [phases]="10"
  [lifecycle]="5"
  [rebase]="--big-mb 500 --rounds 5"
  [samples]="--rounds 3 --cold-rounds 1"
)
declare -A small=(
  [layers]="--size-mb 300 --runs 1"
  [push]="--size-mb 300 --rounds 2"
  [stack]="--rounds 1"
  [sandbox]="30"
  [phases]="5"
  [lifecycle]="3"
  [rebase]="--big-mb 500 --rounds 3"
  [samples]="--rounds 2 --cold-rounds 1"
)
order=(layers push stack sandbox phases lifecycle rebase samples)
# Any bench added later runs too, after these, with no arguments.
for f in bench/*.ts; do
  n=$(basename "$f" .ts)
  case " ${order[*]} " in *" $n "*) ;; *) order+=("$n") ;; esac
done

[ -n "$out" ] || out=$(mktemp -d "${TMPDIR:-/tmp}/kiln-bench-results-XXXXXX")
mkdir -p "$out"
echo "kiln benchmarks $(date -u +%FT%TZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); results in $out"

declare -A status secs
failed=0
for n in "${order[@]}"; do
  if [ -n "$only" ] && [[ ",$only," != *",$n,"* ]]; then continue; fi
  var="KILN_BENCH_${n^^}_ARGS"
  if [ -n "${!var:-}" ]; then argv=${!var}; elif [ $quick = 1 ]; then argv=${small[$n]:-}; else argv=${full[$n]:-}; fi
  echo
  echo "=== bench/$n.ts $argv"
  start=$(date +%s)
  # shellcheck disable=SC2086 # the arguments are meant to split
  node "bench/$n.ts" $argv 2>&1 | tee "$out/$n.txt"
  rc=${PIPESTATUS[0]}
  secs[$n]=$(($(date +%s) - start))
  if [ "$rc" = 0 ]; then status[$n]=ok; else status[$n]="FAILED ($rc)"; failed=1; fi
done

echo
echo "=== digest (full output in $out)"
printf '%-10s %-12s %6s\n' bench status seconds
for n in "${order[@]}"; do
  [ -n "${status[$n]:-}" ] || continue
  printf '%-10s %-12s %6s\n' "$n" "${status[$n]}" "${secs[$n]}"
done
for n in "${order[@]}"; do
  [ -n "${status[$n]:-}" ] || continue
  echo
  echo "--- $n"
  # The lines that carry the figures: ratios, targets, medians, peak memory, bytes uploaded.
  grep -E 'target|ratio|[0-9.]+x\b|median|RSS|bytes|uploaded|digest|kiln/|own work|difference|overhead' "$out/$n.txt" |
    grep -v '^\s*at ' | head -25
done
exit $failed
