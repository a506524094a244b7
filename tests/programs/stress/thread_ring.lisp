; Savina's thread ring: R = 128 processes in a ring, process i placed on scheduler i (modulo the
; number of schedulers), so that every hop crosses schedulers; a token makes H hops (the first
; argument, default 10000). Prints which process holds the token when it reaches 0, and how many
; times each process passed it on.
(def r 128)
(def h (if (empty? (sys/args)) 10000 (parse-int (head (sys/args)))))
(def me (self))

(def node (id)
  (receive ((list 'next nxt) (ring-node id nxt 0))))

(def ring-node (id nxt passed)
  (receive
    ((list 'token 0) (do (send me (list 'ended-at id)) (ring-node id nxt passed)))
    ((list 'token k) (do (send nxt (list 'token (- k 1))) (ring-node id nxt (+ passed 1))))
    ((list 'stop from) (send from (list 'passed id passed)))))

(def pids (list/map (fn (i) (spawn-on i node i)) (list/range r)))
(def wire (ps ns) (if (nil? ps) 'wired (do (send (head ps) (list 'next (head ns))) (wire (tail ps) (tail ns)))))
(wire pids (append (tail pids) (list (head pids))))
(send (head pids) (list 'token h))
(print (receive ((list 'ended-at id) (list 'ended-at id))))
(list/map (fn (p) (send p (list 'stop me))) pids)
(def counts (list/map (fn (id) (receive ((list 'passed i k) :when (== i id) k))) (list/range r)))
(print 'hops (list/reduce + 0 counts))
(print counts)
