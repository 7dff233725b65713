# rule: a bpf_loop callback returning 0 is accepted (twin of cb-return-2).
# context: buffer 8
# accept
mov %r1, 4
lddw %r2, code(cb)
mov %r3, 0
mov %r4, 0
call 181
exit
cb:
mov %r0, 0
exit
