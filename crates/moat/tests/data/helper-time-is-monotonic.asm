# bpf_ktime_get_ns (helper 5) never goes backwards.
# result: 0x1
call 5
mov %r6, %r0
call 5
mov %r1, %r0
mov %r0, 1
jge %r1, %r6, +1
mov %r0, 0
exit
