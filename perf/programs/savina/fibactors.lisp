; Savina fib actors: fib(N) with one process per call, each sending its value to its parent
; (argument N, default 18); prints fib(N).
(def fib (n parent)
  (if (< n 2)
      (send parent n)
      (do (spawn fib (- n 1) (self))
          (spawn fib (- n 2) (self))
          (send parent (+ (receive (a a)) (receive (b b)))))))
(def args (sys/args))
(def n (if (empty? args) 18 (parse-int (head args))))
(spawn fib n (self))
(print (receive (v v)))
