; Savina counting actor: N increments sent to a counter, then one request for the total
; (argument N, default 200000); prints the total.
(def counter (k)
  (receive ((list 'inc d) (counter (+ k d)))
           ((list 'get from) (send from k))))
(def feed (c n) (if (== n 0) nil (do (send c (list 'inc 1)) (feed c (- n 1)))))
(def args (sys/args))
(def n (if (empty? args) 200000 (parse-int (head args))))
(def c (spawn counter 0))
(feed c n)
(send c (list 'get (self)))
(print (receive (k k)))
