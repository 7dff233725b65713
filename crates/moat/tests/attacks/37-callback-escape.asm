# A bpf_loop callback reads host memory: the error surfaces through the helper.
# expect: Helper bpf_loop Callback(OutOfBounds at 9) at 5
mov %r1, 1
lddw %r2, code(cb)
mov %r3, 0
mov %r4, 0
call 181
exit
cb:
lddw %r1, {HEAP}
ldxdw %r0, [%r1]
exit
