#!/bin/bash
# Two ranks of `caption train` on one machine as if on two hosts: two network namespaces joined by a
# veth pair whose both ends `tc` limits to RATE (a token bucket, e.g. 1gbit, 10gbit). mpirun runs in
# the first namespace and starts the second rank in the other through scripts/netns_rsh (Open MPI's
# remote start-up command, `plm_rsh_agent`, in place of ssh); MPI's own traffic (start-up and
# gradients) goes over the veth pair only. Needs root (ip netns, tc). Prints each rank's exchange
# report (CAPTION_MPI_REPORT) and the run's images/s.
#
#   scripts/netns_scaling.sh RATE CAPTION_BINARY [caption train options…]
#
# CAPTION_MPI_BUCKET_MB is passed on (the gradients' bucket size; 0: no overlap with the backward pass).
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 RATE CAPTION_BINARY [caption train options...]" >&2
  exit 64
fi
rate=$1
caption=$(realpath "$2")
shift 2
here=$(dirname "$(realpath "$0")")
a=caption-a
b=caption-b

cleanup() {
  ip netns del $a 2>/dev/null || true
  ip netns del $b 2>/dev/null || true
}
trap cleanup EXIT
cleanup
ip netns add $a
ip netns add $b
ip link add veth-a type veth peer name veth-b
ip link set veth-a netns $a
ip link set veth-b netns $b
ip -n $a addr add 10.77.0.1/24 dev veth-a
ip -n $b addr add 10.77.0.2/24 dev veth-b
for ns in $a $b; do ip -n $ns link set lo up; done
ip -n $a link set veth-a up
ip -n $b link set veth-b up
# The token bucket holds 1 ms at the rate (RATE in gbit or mbit): a larger one lets a whole bucket
# of gradients pass at memory speed.
case $rate in
*gbit) burst=$((${rate%gbit} * 125000)) ;;
*mbit) burst=$((${rate%mbit} * 125)) ;;
*) echo "RATE must be in gbit or mbit" >&2; exit 64 ;;
esac
[ "$burst" -ge 16000 ] || burst=16000
for end in "$a veth-a" "$b veth-b"; do
  ns=${end% *}
  dev=${end#* }
  tc -n "$ns" qdisc add dev "$dev" root tbf rate "$rate" burst "$burst" latency 20ms
done

bucket=()
if [ -n "${CAPTION_MPI_BUCKET_MB:-}" ]; then bucket=(-x CAPTION_MPI_BUCKET_MB); fi
# Both "hosts" are this machine: without --bind-to none each one's daemon would bind its rank to
# core 0, and the two ranks would share one core.
hosts=$(mktemp)
printf '10.77.0.1 slots=1\n10.77.0.2 slots=1\n' >"$hosts"
ip netns exec $a mpirun --allow-run-as-root -np 2 --hostfile "$hosts" \
  --mca plm_rsh_agent "$here/netns_rsh" --mca plm_rsh_no_tree_spawn 1 --bind-to none \
  --mca btl tcp,self --mca btl_tcp_if_include 10.77.0.0/24 --mca oob_tcp_if_include 10.77.0.0/24 \
  -x CAPTION_MPI_REPORT=1 "${bucket[@]}" -x OPENBLAS_NUM_THREADS=1 \
  "$caption" train "$@"
status=$?
rm -f "$hosts"
exit $status
