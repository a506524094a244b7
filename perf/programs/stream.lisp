; One-way stream across schedulers: a sender on scheduler 0 sends N messages to a counter placed
; on scheduler 1 (another OS process when there are two or more schedulers), which answers once
; it has them all. Argument: N (default 100000). Prints done.
(def counter (parent n) (if (== n 0) (send parent 'done) (receive ((list 'n _) (counter parent (- n 1))))))
(def args (sys/args))
(def n (if (empty? args) 100000 (parse-int (head args))))
(def c (spawn-on (+ (sys/scheduler-id) 1) counter (self) n))
(def pump (i) (if (== i n) 'sent (do (send c (list 'n i)) (pump (+ i 1)))))
(pump 0)
(print (receive ('done 'done)))
