# rule: an uninitialised read on a path no execution takes is harmless: the verifier follows paths, and r2 is the constant buffer size 8, so the jump that skips `mov %r0, 1` is never taken.
# context: buffer 8
# accept
jeq %r2, 0, +1
mov %r0, 1
exit
