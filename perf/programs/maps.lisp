; The workload of perf/bench_maps.py: `lispvm run maps.lbc MODE N`.
;   put N   N map/put into a map of integers, starting from {}; prints the size
;   get N   the same map built, then 10 rounds of N map/get (one per key) summed; prints the sum
;   make N  a vector of N zeros (vec/make); prints its length
;   set N   the same vector, then N vec/set, one per index; prints the last element
; The benchmark subtracts one mode from another so that start-up and building cancel out.

(def args (sys/args))
(def mode (head args))
(def n (parse-int (head (tail args))))

(def build (i n m) (if (== i n) m (build (+ i 1) n (map/put m i i))))
(def sum-get (m i n acc) (if (== i n) acc (sum-get m (+ i 1) n (+ acc (map/get m i)))))
(def rounds (m r n acc) (if (== r 0) acc (rounds m (- r 1) n (sum-get m 0 n acc))))
(def sets (v i n) (if (== i n) v (sets (vec/set v i i) (+ i 1) n)))

(cond ((== mode "put") (print (map/size (build 0 n {}))))
      ((== mode "get") (print (rounds (build 0 n {}) 10 n 0)))
      ((== mode "make") (print (vec/len (vec/make n 0))))
      ((== mode "set") (print (vec/get (sets (vec/make n 0) 0 n) (- n 1))))
      (true (print "unknown mode" mode) (halt 2)))
