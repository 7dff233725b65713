# bpf_probe_read with the destination in host memory (arg 1).
# expect: Helper bpf_probe_read OutOfBounds arg 1 at 5
lddw %r1, {HEAP}
mov %r2, 8
mov %r3, %r10
add %r3, -8
call 4
exit
