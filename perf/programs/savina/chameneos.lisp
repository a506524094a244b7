; Savina chameneos: C creatures of three colours meet pairwise at a broker N times; at each
; meeting both take the complement of the two colours (arguments N and C, default 20000 and 10);
; each creature reports its meetings when the broker says stop; prints their sum (2 N).
(def complement (a b) (if (== a b) a (- 3 a b)))
(def creature (broker main colour met)
  (send broker (list 'meet (self) colour))
  (receive
    ((list 'mate other) (creature broker main (complement colour other) (+ met 1)))
    ('stop (send main met))))
(def broker (left waiting)
  (receive
    ((list 'meet who colour)
     (cond ((== left 0) (send who 'stop) (broker 0 waiting))
           ((nil? waiting) (broker left (list who colour)))
           (true (send who (list 'mate (nth waiting 1)))
                 (send (head waiting) (list 'mate colour))
                 (broker (- left 1) nil))))
    ('end (when waiting (send (head waiting) 'stop)))))
(def args (sys/args))
(def n (if (empty? args) 20000 (parse-int (head args))))
(def c (if (< (length args) 2) 10 (parse-int (nth args 1))))
(def me (self))
(def b (spawn broker n nil))
(loop ((i 0)) (when (< i c) (spawn creature b me (mod i 3) 0) (recur (+ i 1))))
(def total (loop ((i 0) (acc 0)) (if (== i c) acc (recur (+ i 1) (+ acc (receive (k k)))))))
(send b 'end)
(print total)
