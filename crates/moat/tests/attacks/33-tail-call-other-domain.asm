# Tail-calls, through its own prog_array, a program of another domain (slot 0 holds the victim's id).
# expect: Helper bpf_tail_call BadArgument arg 3 at 3
lddw %r2, map_idx(2)
mov %r3, 0
call 12
mov %r0, 0
exit
