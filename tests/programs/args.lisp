; (sys/args) is the list of strings after the program's file name (section 8).
;
; args: 10 x
; expect: ("10" "x") 2
; expect: 11

(def args (sys/args))
(print args (length args))
(print (+ 1 (parse-int (head args))))
