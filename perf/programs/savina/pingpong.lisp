; Savina ping-pong: N round trips between two processes (argument N, default 100000); prints
; the number of pongs received.
(def pong ()
  (receive ((list 'ping from) (send from 'pong) (pong)) ('stop 'ok)))
(def ping (p n acc)
  (if (== n 0) acc
      (do (send p (list 'ping (self)))
          (receive ('pong (ping p (- n 1) (+ acc 1)))))))
(def args (sys/args))
(def n (if (empty? args) 100000 (parse-int (head args))))
(def p (spawn pong))
(def got (ping p n 0))
(send p 'stop)
(print got)
