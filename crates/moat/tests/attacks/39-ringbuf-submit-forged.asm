# bpf_ringbuf_submit of a forged record pointer (the victim's value).
# expect: Helper bpf_ringbuf_submit BadArgument arg 1 at 3
lddw %r1, {VICTIM_VALUE}
mov %r2, 0
call 132
exit
