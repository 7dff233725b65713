# r10 is read-only.
# error: WritesFramePointer
add %r10, 8
mov %r0, 0
exit
