; Section 10 forms: when, unless, case, match, loop/recur, named fn, map patterns and map
; literals in code; the loops run long enough to be compiled (a `while` loop in the fast tier,
; entered at the loop's head from the interpreter) and to be preempted in two processes at once.
;
; expect: when-body
; expect: done nil
; expect: unless-body
; expect: 2 nil nil
; expect: (sum 3) (pair 1 two) (other 7) small
; expect: (caught badmatch)
; expect: 12 (1 (2 3))
; expect: 45 (4 3 2 1 0) (2 1)
; expect: 3628800 5 (0 1 2)
; expect: 499999500000 499999500000
; expect: 200000 1000000
; expect: (ok 1 2) any-map not-a-map (nested 3) (guarded b) nil-value
; expect: {a 1 b 2} {1 one (2 3) two} (both 2 3)
; expect: (got 7 8) (got2 x) (kept {a 9})
; expect: (done 300000) (done 300001)
; expect: (7 3 5) 55 20
; expect: 6 (c b a)

(print (when (> 2 1) (print "when-body") 'done) (when (< 2 1) (print "no")))
(print (unless false 1 2) (unless true 'no) (do (unless (> 1 2) (print "unless-body")) nil))
(def classify (x)
  (case x
    ((list 'add a b) (list 'sum (+ a b)))
    ((list a b) :when (number? a) (list 'pair a b))
    ((cons 'other rest) (cons 'other rest))
    (n :when (< n 10) 'small)))
(print (classify '(add 1 2)) (classify '(1 two)) (classify '(other 7)) (classify 3))
(print (try (classify 99) (catch e (list 'caught (head (tail e))))))
(match (list x (list y z)) (list 3 (list 4 5)) (print (+ x y z) (list 1 (list 2 3))))

; loop/recur: a value, building a list, swapping (the new values are all computed first)
(print (loop ((i 0) (s 0)) (if (< i 10) (recur (+ i 1) (+ s i)) s))
       (loop ((i 0) (acc nil)) (if (== i 5) acc (recur (+ i 1) (cons i acc))))
       (loop ((a 1) (b 2) (n 3)) (if (== n 0) (list a b) (recur b a (- n 1)))))
; named fn: calls itself by its name; a loop in tail position of a function, and one that is not
(def fact (fn fact (n) (if (== n 0) 1 (* n (fact (- n 1))))))
(def countdown (n) (loop ((i n) (k 0)) (cond ((== i 0) k) (true (recur (- i 1) (+ k 1))))))
(def upto (n) (let ((xs (loop ((i (- n 1)) (acc nil)) (if (< i 0) acc (recur (- i 1) (cons i acc)))))) xs))
(print (fact 10) (countdown 5) (upto 3))
; a million iterations: long enough to be compiled from the interpreter at the loop's head
(def sum-to (n) (loop ((i 0) (s 0)) (if (< i n) (recur (+ i 1) (+ s i)) s)))
(print (sum-to 1000000) (let ((t 0)) (loop ((i 0)) (when (< i 1000000) (set t (+ t i)) (recur (+ i 1)))) t))
; a loop whose body calls functions, and a nested loop
(def twice (x) (* 2 x))
(print (loop ((i 0) (s 0)) (if (< i 100000) (recur (+ i 1) (+ s (twice 1))) s))
       (loop ((i 0) (s 0))
         (if (< i 1000) (recur (+ i 1) (loop ((j 0) (s s)) (if (< j 1000) (recur (+ j 1) (+ s 1)) s))) s)))

; map patterns in case, receive and match; map literals evaluate their keys and values
(def m {'a 1 'b (+ 1 1) "c" {'d 3}})
(print (case m ({'a x 'b y} (list 'ok x y)))
       (case m ({'zz x} 'no) ({} 'any-map))
       (case 5 ({} 'map) (_ 'not-a-map))
       (case m ({"c" {'d d}} (list 'nested d)))
       (case m ({'a x} :when (> x 5) (list 'guarded 'a)) ({'b 2} (list 'guarded 'b)))
       (case {'k nil} ({'k nil} 'nil-value) (_ 'missing)))
(def k 'b)
(print {'a 1 k 2} {1 'one (list 2 3) 'two} (match {'x a 'y b} {'x 2 'y 3} (list 'both a b)))
(send (self) {'tag 'msg 'a 7 'b 8})
(send (self) {'other 'x})
(send (self) {'a 9})
(print (receive ({'tag 'msg 'a a 'b b} (list 'got a b)))
       (receive ({'other v} (list 'got2 v)))
       (receive (m (list 'kept m))))

; two processes each running a long compiled loop at once: preempted at the loop's head, and
; (with several schedulers) moved, they still count right
(def spin (parent tag n)
  (send parent (list tag (loop ((i 0) (c 0)) (if (< i n) (recur (+ i 1) (+ c 1)) c)))))
(let ((me (self)))
  (spawn (fn () (spin me 'a 300000)))
  (spawn (fn () (spin me 'b 300001)))
  (print (receive ((list 'a n) (list 'done n))) (receive ((list 'b n) (list 'done n)))))

; recur inside case and receive clause bodies; loop variables captured by closures
(print (loop ((xs '(7 3 5)) (acc nil))
         (case xs (nil (reverse acc)) ((cons x rest) (recur rest (cons x acc)))))
       (loop ((i 0) (s 0)) (if (> i 10) s (recur (+ i 1) (+ s i))))
       (let ((fs (loop ((i 0) (fs nil)) (if (< i 5) (recur (+ i 1) (cons (fn () (* i 2)) fs)) fs))))
         (list/reduce (fn (acc f) (+ acc (f))) 0 fs)))
(send (self) 1)
(send (self) 2)
(send (self) 3)
(print (loop ((n 3) (s 0)) (if (== n 0) s (receive (x (recur (- n 1) (+ s x))))))
       (loop ((xs '(a b c)) (out nil)) (if (nil? xs) out (recur (tail xs) (cons (head xs) out)))))
