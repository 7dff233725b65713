# rule: an unprivileged loader may not reach one bpf_tail_call site with two different program arrays (the kernel's Spectre v1 hardening: "tail_call abusing map_ptr").
# context: xdp
# map: jumps_a prog_array 4 4 4
# map: jumps_b prog_array 4 4 4
# unprivileged
# reject: TailCallMapsDiffer at 10
mov %r6, %r1                # 0
ldxw %r3, [%r1+12]          # 1: any number
lddw %r2, map_idx(0)        # 2
jeq %r3, 0, +2              # 4
lddw %r2, map_idx(1)        # 5
mov %r1, %r6                # 7
mov %r3, 0                  # 8
ja +0                       # 9
call 12                     # 10: bpf_tail_call
mov %r0, 2                  # 11
exit
