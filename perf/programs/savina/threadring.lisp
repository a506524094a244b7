; Savina thread ring: P processes in a ring pass a token H hops (arguments H and P, default
; 200000 and 100); prints the index of the process holding the token when the count runs out.
(def node (id next)
  (receive
    ((list 'next p) (node id p))
    ((list 'token k main)
     (if (== k 0) (send main id) (send next (list 'token (- k 1) main)))
     (node id next))))
(def args (sys/args))
(def h (if (empty? args) 200000 (parse-int (head args))))
(def np (if (< (length args) 2) 100 (parse-int (nth args 1))))
(def nodes (list/map (fn (i) (spawn node i nil)) (list/range np)))
(loop ((ps nodes)) (when (not (empty? ps))
  (send (head ps) (list 'next (if (empty? (tail ps)) (head nodes) (head (tail ps)))))
  (recur (tail ps))))
(send (head nodes) (list 'token h (self)))
(print (receive (id id)))
