; Savina's big: N = 64 actors (actor i placed on scheduler i modulo the number of schedulers), each
; sends M = 100 pings, one at a time, to peers chosen by its own seeded generator and waits for
; each pong, while answering the pings it receives. The choices depend only on the seeds, so how
; many pings each actor received, and a checksum of who sent them, are fixed.
(def n 64)
(def m 100)
(def me (self))

(def rand (x) (mod (+ (* x 1103515245) 12345) 2147483648))
(def pick (id seed) (let ((t (mod (div seed 65536) n))) (if (== t id) (mod (+ t 1) n) t)))

(def ping (peers id seed seq)
  (send (vec/get peers (pick id seed)) (list 'ping (self) id seq)))

(def act (id peers seed sent got sum)
  (receive
    ((list 'ping from k j)
      (do (send from (list 'pong))
          (act id peers seed sent (+ got 1) (+ sum (* (+ k 1) (+ j 1))))))
    ((list 'pong)
      (if (< (+ sent 1) m)
        (let ((s (rand seed)))
          (ping peers id s (+ sent 1))
          (act id peers s (+ sent 1) got sum))
        (do (send me (list 'done id)) (act id peers seed (+ sent 1) got sum))))
    ((list 'stop) (send me (list 'stats id got sum)))))

(def actor (id)
  (receive
    ((list 'peers peers)
      (let ((s (rand (+ 1 (* 7919 id)))))
        (ping peers id s 0)
        (act id peers s 0 0 0)))))

(def pids (list/map (fn (i) (spawn-on i actor i)) (list/range n)))
(def peers (list/to-vec pids))
(list/map (fn (p) (send p (list 'peers peers))) pids)
(def wait-done (k) (if (> k 0) (receive ((list 'done _) (wait-done (- k 1)))) 'all-done))
(print (wait-done n))
(list/map (fn (p) (send p (list 'stop))) pids)
(def stats (list/map (fn (id) (receive ((list 'stats i got sum) :when (== i id) (list got sum)))) (list/range n)))
(print 'pings (list/reduce + 0 (list/map head stats)))
(print 'checksum (list/reduce + 0 (list/map (fn (s) (nth s 1)) stats)))
(print (list/map head stats))
