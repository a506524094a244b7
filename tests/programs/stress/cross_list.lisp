; Issue 12: a 100,000-element list sent from scheduler 1 to scheduler 0, whose sender is then
; idle, while the receiver is busy (it reads between slices); four times, each from a new process.
(def me (self))
(def burn (n acc) (if (== n 0) acc (burn (- n 1) (+ acc 1))))
(def one-round (k)
  (spawn-on 1 (fn () (send me (list/range 100000))))
  (burn 100000 0)
  (let ((xs (recv)))
    (list (length xs) (list/reduce + 0 xs) (== xs (list/range 100000)))))
(print (list/map one-round (list/range 4)))
