# rule: an instruction jumped over by every path is unreachable.
# context: buffer 8
# reject: Unreachable at 1
ja +1
mov %r0, 1
mov %r0, 0
exit
