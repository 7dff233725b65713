# rule: a helper's output buffer must hold the size it is given.
# context: tracing
# reject: HelperMemOutOfBounds at 3
mov %r1, %r10
add %r1, -16
mov %r2, 32
call 16
exit
