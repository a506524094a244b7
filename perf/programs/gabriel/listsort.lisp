; list/sort of N pseudo-random integers (argument N, default 100000); prints the same checksum
; as mergesort.lisp (the sum of index * value of the sorted list, modulo 1000000007).
(def randoms (n)
  (loop ((i 0) (x 42) (acc nil))
    (if (== i n) acc
        (let ((x2 (mod (+ (* x 1103515245) 12345) 2147483648)))
          (recur (+ i 1) x2 (cons x2 acc))))))
(def checksum (xs)
  (loop ((xs xs) (i 0) (acc 0))
    (if (empty? xs) acc (recur (tail xs) (+ i 1) (mod (+ acc (* i (head xs))) 1000000007)))))
(def args (sys/args))
(def n (if (empty? args) 100000 (parse-int (head args))))
(print (checksum (list/sort (randoms n))))
