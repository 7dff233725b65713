# rule: a store below the 512-byte stack frame is out of bounds.
# context: buffer 8
# reject: OutOfBounds at 0
stdw [%r10-520], 0
mov %r0, 0
exit
