; Does this node really run its schedulers in separate OS processes? Prints three lines: the
; number of schedulers, the OS pid of scheduler 0, and the OS pid seen by a process placed on
; scheduler 1 (the same pid when there is one scheduler, or when spawn-on does not cross).
(def me (self))
(print (sys/schedulers))
(print (sys/os-pid))
(spawn-on 1 (fn () (send me (sys/os-pid))))
(print (recv))
