# rule: a helper call clobbers r1-r5.
# context: buffer 8
# reject: UninitRegister at 2
mov %r0, 1                  # 0
call 5                      # 1: bpf_ktime_get_ns
mov %r0, %r1                # 2
exit
