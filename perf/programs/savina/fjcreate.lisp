; Savina fork-join creation: N processes, each given one number, does a little arithmetic and
; sends the result back (argument N, default 20000); prints the sum of the results.
(def work (x) (loop ((i 0) (a x)) (if (== i 40) a (recur (+ i 1) (mod (+ (* a 31) i) 1000003)))))
(def child (main) (receive (x (send main (work x)))))
(def args (sys/args))
(def n (if (empty? args) 20000 (parse-int (head args))))
(def me (self))
(loop ((i 0)) (when (< i n) (send (spawn child me) i) (recur (+ i 1))))
(print (loop ((i 0) (acc 0)) (if (== i n) acc (recur (+ i 1) (+ acc (receive (s s)))))))
