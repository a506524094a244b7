; Proper tail calls in constant stack (self, mutual, through apply and through a variable) and
; deep non-tail recursion (section 3).
;
; expect: 1000000
; expect: true true
; expect: done
; expect: var-done
; expect: 100000
; expect: 5000050000
; expect: 100000

(def loop (n acc) (if (== n 0) acc (loop (- n 1) (+ acc 1))))
(print (loop 1000000 0))
(def even? (n) (if (== n 0) true (odd? (- n 1))))
(def odd? (n) (if (== n 0) false (even? (- n 1))))
(print (even? 100000) (odd? 100001))
(def aloop (n) (if (== n 0) 'done (apply aloop (list (- n 1)))))
(print (aloop 100000))
(def via-var (f n) (if (== n 0) 'var-done (f f (- n 1))))
(print (via-var via-var 100000))
(def count (n) (if (== n 0) 0 (+ 1 (count (- n 1)))))
(print (count 100000))
(def sum (xs) (if (empty? xs) 0 (+ (head xs) (sum (tail xs)))))
(print (sum (list/range 100001)))
(def build (n) (if (== n 0) nil (cons n (build (- n 1)))))
(print (length (build 100000)))
