#!/bin/bash
# The measurement of docs/compression.md: one push of DIR/half.bin uncompressed, with
# --compress zstd and with --compress lz4, one receiver, on loopback multicast. Run it in a
# private namespace only: unshare -rn bash docs/compression-bench.sh DIR
# (BIN: where mcast-send and mcast-recv are, default target/release of this checkout).
set -u
B=${BIN:-$(cd "$(dirname "$0")/.." && pwd)/target/release}
cd "$1"
ip link set lo up; ip link set lo multicast on; ip route add 239.0.0.0/8 dev lo
G=239.255.46.1:7500
for mode in none zstd lz4; do
  rm -rf out; mkdir out; rm -f ready
  flag=(); [ $mode != none ] && flag=(--compress $mode)
  ( TIMEFORMAT='%U %S'; time "$B/mcast-recv" --group $G --interface 127.0.0.1 --output out --once \
      --json --timeout 300s --ready-file ready --workers 1 > recv-$mode.json 2> recv-$mode.log ) 2> recv-$mode.cpu &
  rp=$!
  for _ in $(seq 100); do [ -e ready ] && break; sleep 0.1; done
  start=$(date +%s.%N)
  ( TIMEFORMAT='%U %S'; time "$B/mcast-send" half.bin --group $G --interface 127.0.0.1 --rate 2G --receivers 1 \
      --timeout 300s --workers 1 "${flag[@]}" --json > send-$mode.json 2> send-$mode.log ) 2> send-$mode.cpu
  wait $rp
  end=$(date +%s.%N)
  cmp half.bin out/half.bin && ok=identical || ok=DIFFERENT
  python3 - "$mode" "$start" "$end" "$ok" <<'PY'
import json, sys
mode, start, end, ok = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
s = json.load(open(f"send-{mode}.json"))
rc = open(f"recv-{mode}.cpu").read().split()
sc = open(f"send-{mode}.cpu").read().split()
c = s.get("compression") or {}
print(f"{mode:5} seconds {s['seconds']:.2f} wall {end-start:.2f} wire_MiB {s['stats']['bytes_sent']/2**20:.1f} "
      f"payload_MiB {s['bytes']/2**20:.0f} compressed_MiB {c.get('wire_payload_bytes', s['bytes'])/2**20:.1f} "
      f"recv_cpu_s {float(rc[-2])+float(rc[-1]):.2f} send_cpu_s {float(sc[-2])+float(sc[-1]):.2f} {ok}")
PY
done
