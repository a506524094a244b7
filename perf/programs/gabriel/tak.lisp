; Gabriel's tak: (tak 18 12 6) repeated R times (argument R, default 10); prints the sum of the results.
(def tak (x y z)
  (if (not (< y x)) z
      (tak (tak (- x 1) y z) (tak (- y 1) z x) (tak (- z 1) x y))))
(def args (sys/args))
(def r (if (empty? args) 10 (parse-int (head args))))
(print (loop ((i 0) (acc 0)) (if (== i r) acc (recur (+ i 1) (+ acc (tak 18 12 6))))))
