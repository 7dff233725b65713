# bpf_ringbuf_output of 2 GiB from an 8-byte stack slot (arg 2).
# expect: Helper bpf_ringbuf_output OutOfBounds arg 2 at 6
lddw %r1, map_idx(1)
mov %r2, %r10
add %r2, -8
mov %r3, 0x7fffffff
mov %r4, 0
call 130
exit
