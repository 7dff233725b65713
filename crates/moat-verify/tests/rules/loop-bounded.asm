# rule: a loop with a constant trip count terminates and is accepted (twin of loop-unbounded).
# context: buffer 8
# accept
mov %r0, 0
mov %r1, 0
again:
add %r0, %r1
add %r1, 1
jlt %r1, 10, again
exit
