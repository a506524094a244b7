; Savina's counting actor: a producer placed on scheduler 1 sends N increments to a counter on
; scheduler 0, then asks it for the count. The counter also checks that the increments arrive in
; the order they were sent. N is the first argument (default 200000: the burst that stalled the
; link from scheduler 1 to scheduler 0 in issue 12).
(def n (if (empty? (sys/args)) 200000 (parse-int (head (sys/args)))))
(def me (self))

(def counter (count total late)
  (receive
    ((list 'inc v) (counter (+ count 1) (+ total v) (if (== v count) late (+ late 1))))
    ((list 'get from) (send from (list 'count count 'sum total 'out-of-order late)))))

(def c (spawn-on 0 counter 0 0 0))
(def pump (i) (if (< i n) (do (send c (list 'inc i)) (pump (+ i 1))) (do (send c (list 'get me)) (list 'sent i))))
(spawn-on 1 (fn () (send me (pump 0))))
(print (receive ((list 'sent k) (list 'sent k))))
(print (receive ((list 'count k 'sum s 'out-of-order late) (list 'count k 'sum s 'out-of-order late))))
