# rule: an unprivileged program may not overwrite part of a spilled pointer.
# context: buffer 8
# unprivileged
# reject: PartialPointerOverwrite at 1
stxdw [%r10-8], %r10
stb [%r10-8], 0
mov %r0, 0
exit
