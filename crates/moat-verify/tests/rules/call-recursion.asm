# rule: a function may not call itself.
# context: buffer 8
# reject: Recursion at 2
call local f                # 0
exit                        # 1
f:
call local f                # 2
exit
