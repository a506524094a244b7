; Mandelbrot: the points of an N x N grid over [-2, 0.5] x [-1.25, 1.25] that stay bounded for
; 50 iterations (argument N, default 100); prints their count.
(def bounded? (cr ci)
  (loop ((zr 0.0) (zi 0.0) (k 0))
    (cond ((== k 50) 1)
          ((> (+ (* zr zr) (* zi zi)) 4.0) 0)
          (true (recur (+ (- (* zr zr) (* zi zi)) cr) (+ (* 2.0 zr zi) ci) (+ k 1))))))
(def count-grid (n)
  (loop ((y 0) (acc 0))
    (if (== y n) acc
        (let ((ci (- (* 2.5 (/ y n)) 1.25)))
          (recur (+ y 1)
                 (loop ((x 0) (a acc))
                   (if (== x n) a
                       (recur (+ x 1) (+ a (bounded? (- (* 2.5 (/ x n)) 2.0) ci))))))))))
(def args (sys/args))
(def n (if (empty? args) 100 (parse-int (head args))))
(print (count-grid n))
