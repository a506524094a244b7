; bench_memory.py: the cost of a selective receive that must skip unmatched messages.
; Arguments: J R. Puts J unmatched 'junk messages in the main process's mailbox, then R times
; sends itself 'hit and receives it, so that each receive scans past the J messages first.
(def args (sys/args))
(def j (parse-int (head args)))
(def r (parse-int (nth args 1)))
(def fill (k) (if (== k 0) 'ok (do (send (self) 'junk) (fill (- k 1)))))
(fill j)
(def go (k) (if (== k 0) 'done (do (send (self) 'hit) (receive ('hit (go (- k 1)))))))
(print (go r))
