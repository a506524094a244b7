; An uncaught error ends the program with status 1 and FILE:LINE:COL on standard error.
;
; expect: one
; expect: two
; expect-error: 17:3

(def helper (x)
  (+ x 1))

(print "one")
(print (if (== (helper 1) 2) "two" "wrong"))
(def g (x)
  ; the error is raised here, on line 17, column 3
  ; (a few comment lines so the line number is not small)
  ;
  ;
  (head x))
(g nil)
(print "never")
