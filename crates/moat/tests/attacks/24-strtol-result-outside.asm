# bpf_strtol parsing "7" with the result pointer in host memory (arg 4).
# expect: Helper bpf_strtol OutOfBounds arg 4 at 8
stb [%r10-8], 0x37
stb [%r10-7], 0
mov %r1, %r10
add %r1, -8
mov %r2, 2
mov %r3, 0
lddw %r4, {HEAP}
call 105
exit
