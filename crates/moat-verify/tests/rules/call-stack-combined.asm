# rule: the frames of one call chain share 512 bytes of stack.
# context: buffer 8
# reject: StackTooDeep at 3
stdw [%r10-264], 0          # 0: main uses 264 bytes
call local f                # 1
exit                        # 2
f:
stdw [%r10-256], 0          # 3: 264 + 256 > 512
mov %r0, 0
exit
