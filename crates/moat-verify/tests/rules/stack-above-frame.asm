# rule: r10 is the top of the stack: a store that straddles it is out of bounds.
# context: buffer 8
# reject: OutOfBounds at 0
stw [%r10-2], 0
mov %r0, 0
exit
