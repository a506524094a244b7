; A list sieve: the primes below 20000 by filtering a list with each prime up to its square
; root, R times (argument R, default 10); prints the count and the sum of the primes, summed.
(def sieve (n)
  (loop ((xs (list/range 2 n)) (done nil))
    (let ((p (head xs)))
      (if (> (* p p) n)
          (append (reverse done) xs)
          (recur (list/filter (fn (x) (!= (mod x p) 0)) (tail xs)) (cons p done))))))
(def args (sys/args))
(def r (if (empty? args) 10 (parse-int (head args))))
(print (loop ((i 0) (acc 0))
         (if (== i r) acc
             (let ((ps (sieve 20000)))
               (recur (+ i 1) (+ acc (length ps) (list/reduce + 0 ps)))))))
