#!/usr/bin/env bash
# A first sanity look (issue 2): every model and nginx (1 worker) in the same run, with
# ab -n 20000 -c 10 (a connection per request) and wrk -t1 -c10 -d5s (keep-alive).
# Prints req/s and the ratio to nginx. The real suite is `make paper` / `make bench`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/peers.sh
ensure_peers
cargo build --release --workspace -q
bin=target/release
AB_N=${AB_N:-20000}
WRK_D=${WRK_D:-5s}

measure() { # addr -> "ab_rps wrk_rps"
  local addr=$1 ab_rps wrk_rps
  ab_rps=$(ab -q -n "$AB_N" -c 10 "http://$addr/" 2>/dev/null | awk '/Requests per second/ {print $4}')
  wrk_rps=$(wrk -t1 -c10 -d"$WRK_D" "http://$addr/" 2>/dev/null | awk '/Requests\/sec/ {print $2}')
  echo "${ab_rps:-NA} ${wrk_rps:-NA}"
}

declare -A AB WRK
rows=()
if start_nginx; then
  read -r AB[nginx] WRK[nginx] < <(measure "$NGINX_ADDR"); stop_nginx; rows+=(nginx)
else
  echo "nginx not installed: no reference row" >&2
fi
for model in iterative fork threads pool prefork epoll mio tokio; do
  out=$(mktemp)
  "$bin/server-$model" > "$out" &
  pid=$!
  for _ in $(seq 100); do grep -q listening "$out" && break; sleep 0.02; done
  addr=$(sed -n 's/^listening on //p' "$out")
  read -r AB[$model] WRK[$model] < <(measure "$addr")
  kill -TERM "$pid"; wait "$pid" || true; rm -f "$out"
  rows+=("$model")
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "NA" || b == "" || b == "NA" || b == 0) print "NA"; else printf "%.2f", a / b }'; }
printf '| server | ab -n %s -c 10 req/s | x nginx | wrk -t1 -c10 -d%s req/s | x nginx |\n|---|---:|---:|---:|---:|\n' "$AB_N" "$WRK_D"
for r in "${rows[@]}"; do
  printf '| %s | %s | %s | %s | %s |\n' "$r" "${AB[$r]}" "$(ratio "${AB[$r]}" "${AB[nginx]:-}")" "${WRK[$r]}" "$(ratio "${WRK[$r]}" "${WRK[nginx]:-}")"
done
