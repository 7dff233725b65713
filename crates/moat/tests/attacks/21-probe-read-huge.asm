# bpf_probe_read with a 1 TiB size: audited before the host allocates anything (arg 1).
# expect: Helper bpf_probe_read OutOfBounds arg 1 at 6
mov %r1, %r10
add %r1, -8
lddw %r2, 0x10000000000
lddw %r3, {HEAP}
call 4
exit
