; Savina's fork-join, both kinds. Create: 2000 processes (process i placed on scheduler i modulo
; the number of schedulers) each compute a value from i and send it back; the main process joins
; them. Throughput: 8 workers each receive 5000 work messages from the main process and fold them
; in the order they arrive, so that a reordered message changes the answer.
(def me (self))
(def jobs 2000)
(def f (i) (list/reduce + 0 (list/map (fn (k) (* k k)) (list/range (mod i 50)))))
(list/map (fn (i) (spawn-on i (fn () (send me (list 'r i (f i)))))) (list/range jobs))
(def join (k sum ids) (if (== k 0) (list 'joined sum ids)
                         (receive ((list 'r i v) (join (- k 1) (+ sum v) (+ ids i))))))
(print (join jobs 0 0))

(def workers 8)
(def per 5000)
(def worker (k n acc)
  (receive
    ((list 'work j) (worker k (+ n 1) (mod (+ (* acc 31) j) 1000000007)))
    ((list 'stop from) (send from (list 'w k n acc)))))
(def ws (list/map (fn (k) (spawn-on k worker k 0 0)) (list/range workers)))
(def feed (j) (if (< j per) (do (list/map (fn (w) (send w (list 'work j))) ws) (feed (+ j 1))) 'fed))
(print (feed 0))
(list/map (fn (w) (send w (list 'stop me))) ws)
(print (list/map (fn (k) (receive ((list 'w i n acc) :when (== i k) (list n acc)))) (list/range workers)))
