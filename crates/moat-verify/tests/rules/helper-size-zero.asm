# rule: a size argument that must be positive may not be zero (bpf_get_current_comm).
# context: tracing
# reject: HelperArg at 3
mov %r1, %r10
add %r1, -16
mov %r2, 0
call 16
exit
