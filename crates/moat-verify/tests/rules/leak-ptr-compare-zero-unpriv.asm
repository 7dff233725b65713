# rule: re-checking a map value pointer already known non-null against 0 leaks nothing, even for an unprivileged program: the outcome is known (the kernel's is_branch_taken with reg_not_null; real instance: cilium/bpf_netdev.o's tail_handle_ipv4), so only the known side is followed.
# context: buffer 8
# map: values array 4 8 1
# unprivileged
# accept
stw [%r10-4], 0             # 0
mov %r2, %r10               # 1
add %r2, -4                 # 2
lddw %r1, map_idx(0)        # 3
call 1                      # 5
jeq %r0, 0, out             # 6
jne %r0, 0, +1              # 7: known true
ldxb %r0, [%r1+100]         # 8: never reached (r1 is not even a pointer here)
mov %r0, 1                  # 9
out:
mov %r0, 0
exit
