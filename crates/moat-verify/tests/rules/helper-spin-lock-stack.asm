# rule: bpf_spin_lock needs a lock inside a map value, not the stack.
# context: buffer 8
# reject: HelperArg at 3
stdw [%r10-8], 0
mov %r1, %r10
add %r1, -8
call 93
mov %r0, 0
exit
