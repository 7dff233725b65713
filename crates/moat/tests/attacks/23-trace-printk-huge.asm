# bpf_trace_printk with a huge format size at the top of the stack (arg 1).
# expect: Helper bpf_trace_printk OutOfBounds arg 1 at 4
mov %r1, %r10
add %r1, -8
lddw %r2, 0x100000000
call 6
exit
