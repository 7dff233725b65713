# rule: re-checking a map value pointer already known non-null against 0 leaks nothing, even for an unprivileged program.
# FIXME: moat rejects this safe program: for an unprivileged loader a comparison involving a pointer that is not `_or_null` is a PointerComparison, while the kernel knows the outcome of `ptr != 0` for a map value (is_branch_taken) and allows it (real instance: cilium/bpf_netdev.o's tail_handle_ipv4).
# context: buffer 8
# map: values array 4 8 1
# unprivileged
# reject: PointerComparison at 7
stw [%r10-4], 0             # 0
mov %r2, %r10               # 1
add %r2, -4                 # 2
lddw %r1, map_idx(0)        # 3
call 1                      # 5
jeq %r0, 0, out             # 6
jne %r0, 0, +1              # 7: known true
mov %r0, 1                  # 8
out:
mov %r0, 0
exit
