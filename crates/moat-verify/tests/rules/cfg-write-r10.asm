# rule: the frame pointer r10 is read-only.
# context: buffer 8
# reject: Program::WritesFramePointer at 1
mov %r0, 0
mov %r10, 0
exit
