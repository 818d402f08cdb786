#!/usr/bin/env bash
# bench/device_suite.sh SECONDS: the project's GPU benchmarks, run by the device check
# (../shared/tools/device_check.sh) with the seconds it has left. Most important first, each under
# `timeout` cut to what is left, so a slow or failing one never starves the ones before it; each
# benchmark appends its own dated section (device, versions, command) to bench/RESULTS.md and its
# rows to bench/out/*.json, which the check brings back.
set -u -o pipefail
export PYTHONUNBUFFERED=1
BUDGET=${1:-400}
START=$(date +%s)
CORES=$(nproc)
left() { echo $((BUDGET - ($(date +%s) - START))); }
step() { # NAME LIMIT CMD...
  local name=$1 limit=$2 avail t0 rc
  shift 2
  avail=$(($(left) - 5))
  if [ "$avail" -lt 20 ]; then
    echo "### SKIP $name: out of time"
    return 0
  fi
  [ "$limit" -gt "$avail" ] && limit=$avail
  echo "### $name: $* (timeout ${limit}s)"
  t0=$(date +%s)
  timeout -k 5 "$limit" "$@"
  rc=$?
  echo "### $name: exit $rc after $(($(date +%s) - t0))s"
}

# 1. The headline: GPU learn + plan + predict on 1M seed / 4M priors services (the CPU backend and
#    DuckDB on the same data are step 3's). Generating the data takes about 40 s of host time (it is
#    then read back from bench/out/data by step 3): the check needs BUDGET_S >= 400 for this list.
step engine-gpu 150 python3 bench/bench_engine.py --backend gpu --no-duckdb --services 1000000 \
  --priors 4000000 --repeat 3 --warmup 1
# 2. Peak device memory per seed and priors service (RMM statistics), the byte floor per stage.
step scale 120 python3 bench/bench_scale.py --backend gpu --hosts 4e6 --seed-fraction 0.05 \
  --priors-fraction 0.3 --priors-per-partition 4000000 --cluster none --append
# 3. Same data, same host: the CPU backend and DuckDB on all cores beside the GPU.
step engine-all 200 python3 bench/bench_engine.py --backend gpu --backend cpu --services 1000000 \
  --priors 4000000 --repeat 2 --warmup 1 --duckdb-threads "$CORES"
# 4. dask-cuda on one GPU against one process.
step scale-local-cuda 170 python3 bench/bench_scale.py --backend gpu --hosts 4e6 --seed-fraction 0.05 \
  --priors-fraction 0.3 --priors-per-partition 2000000 --cluster none --cluster local-cuda --workers 1 --append
# 5. port2dist: build and the min-plus APSP kernel against SciPy.
step portdist 120 python3 bench/bench_portdist.py --backend gpu --probes 5000000 --repeat 2 \
  --ports 1000,4000 --engines gpu,scipy --apsp-budget-s 30 --record
# 6. A second, larger size of the scale run (the 1%-IPv4 extrapolation needs two).
step scale-large 300 python3 bench/bench_scale.py --backend gpu --hosts 1.6e7 --seed-fraction 0.05 \
  --priors-fraction 0.3 --priors-per-partition 10000000 --cluster none --append
# 7. The pair kernel alone, as a share of the measured copy bandwidth.
step kernel 60 python3 bench/bench_kernel.py --backend gpu --hosts 2e6 --features 8 --repeat 10 --append
exit 0
