# rule: an unprivileged program may pass a spilled number to a helper's memory argument (the safe twin of leak-ptr-via-helper-unpriv).
# context: buffer 8
# map: values hash 4 8 16
# unprivileged
# accept
mov %r6, 42                 # 0
stxdw [%r10-8], %r6         # 1: a number spilled
stw [%r10-12], 0            # 2: key
mov %r2, %r10               # 3
add %r2, -12                # 4
mov %r3, %r10               # 5
add %r3, -8                 # 6: value = the spilled number
lddw %r1, map_idx(0)        # 7
mov %r4, 0                  # 9
call 2                      # 10: bpf_map_update_elem
mov %r0, 0                  # 11
exit                        # 12
