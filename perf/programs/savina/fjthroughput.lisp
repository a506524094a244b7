; Savina fork-join throughput: K workers each receive M messages and do a little arithmetic on
; each (arguments M and K, default 4000 and 32); each reports its sum; prints the total.
(def work (x) (loop ((i 0) (a x)) (if (== i 40) a (recur (+ i 1) (mod (+ (* a 31) i) 1000003)))))
(def worker (main m acc)
  (if (== m 0) (send main acc)
      (receive (x (worker main (- m 1) (+ acc (work x)))))))
(def args (sys/args))
(def m (if (empty? args) 4000 (parse-int (head args))))
(def k (if (< (length args) 2) 32 (parse-int (nth args 1))))
(def me (self))
(def ws (list/map (fn (i) (spawn worker me m 0)) (list/range k)))
(loop ((j 0)) (when (< j m) (loop ((w ws)) (when (not (empty? w)) (send (head w) j) (recur (tail w)))) (recur (+ j 1))))
(print (loop ((i 0) (acc 0)) (if (== i k) acc (recur (+ i 1) (+ acc (receive (s s)))))))
