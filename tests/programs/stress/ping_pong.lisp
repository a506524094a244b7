; Savina's ping-pong: a pinger and a ponger placed on schedulers 2 and 3 (modulo the number of
; schedulers) exchange N round trips; every reply carries the next number, and the pinger checks it.
(def n (if (empty? (sys/args)) 10000 (parse-int (head (sys/args)))))
(def me (self))

(def ponger (served)
  (receive
    ((list 'ping from i) (do (send from (list 'pong (+ i 1))) (ponger (+ served 1))))
    ((list 'stop from) (send from (list 'served served)))))

(def pinger (pong i)
  (if (< i n)
    (do (send pong (list 'ping (self) i))
        (receive
          ((list 'pong j) :when (== j (+ i 1)) (pinger pong j))
          ((list 'pong j) (list 'wrong-reply i j))))
    (list 'round-trips i)))

(def pong (spawn-on 3 ponger 0))
(spawn-on 2 (fn () (send me (pinger pong 0))))
(print (recv))
(send pong (list 'stop me))
(print (recv))
