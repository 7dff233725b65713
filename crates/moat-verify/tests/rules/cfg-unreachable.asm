# rule: every instruction must be reachable.
# context: buffer 8
# reject: Unreachable at 2
mov %r0, 0
exit
mov %r0, 1
exit
