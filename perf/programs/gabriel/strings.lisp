; String building: the numbers 0..9999 joined by commas, split again, and each piece wrapped in
; brackets and joined, R times (argument R, default 10); prints the total length of the strings.
(def build ()
  (let ((s (str/join "," (list/map str (list/range 10000))))
        (parts (str/split s ","))
        (t (str/join "" (list/map (fn (p) (str "[" p "]")) parts))))
    (+ (str/length s) (length parts) (str/length t))))
(def args (sys/args))
(def r (if (empty? args) 10 (parse-int (head args))))
(print (loop ((i 0) (acc 0)) (if (== i r) acc (recur (+ i 1) (+ acc (build))))))
