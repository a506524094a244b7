; (halt code) ends the node at once with that exit status (section 8), after the output so far.
;
; expect: before
; expect-exit: 3

(print "before")
(halt 3)
(print "after")
