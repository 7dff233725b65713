# rule: a map argument must be a map handle, not a number.
# context: buffer 8
# reject: HelperArg at 4
stw [%r10-4], 0
mov %r2, %r10
add %r2, -4
mov %r1, 0
call 1
mov %r0, 0
exit
