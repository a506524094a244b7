; N-queens on lists: the number of solutions on an 8x8 board, counted R times (argument R,
; default 10); prints the total. A placement is a list of columns, newest first.
(def ok? (col placed dist)
  (cond ((empty? placed) true)
        ((let ((c (head placed)))
           (or (== c col) (== c (+ col dist)) (== c (- col dist)))) false)
        (true (ok? col (tail placed) (+ dist 1)))))
(def queens (n row placed)
  (if (== row n) 1
      (loop ((col 0) (acc 0))
        (if (== col n) acc
            (recur (+ col 1)
                   (if (ok? col placed 1) (+ acc (queens n (+ row 1) (cons col placed))) acc))))))
(def args (sys/args))
(def r (if (empty? args) 10 (parse-int (head args))))
(print (loop ((i 0) (acc 0)) (if (== i r) acc (recur (+ i 1) (+ acc (queens 8 0 nil))))))
