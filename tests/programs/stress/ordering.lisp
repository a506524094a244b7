; Message order under load: 8 senders (sender k placed on scheduler k modulo the number of
; schedulers) each send 2000 numbered messages to the main process, from a closure that captures
; the sender's number; the receiver checks every sender's sequence as the messages arrive.
(def senders 8)
(def per 2000)
(def me (self))
(def sender (k)
  (list/map (fn (i) (send me (list 'm k i))) (list/range per))
  (send me (list 'fin k)))
(list/map (fn (k) (spawn-on k sender k)) (list/range senders))

; the list xs with its k-th element incremented
(def bump (xs k) (if (== k 0) (cons (+ (head xs) 1) (tail xs)) (cons (head xs) (bump (tail xs) (- k 1)))))
(def take-all (next bad left)
  (if (== left 0)
    (list next bad)
    (receive ((list 'm k i) (take-all (bump next k) (if (== i (nth next k)) bad (+ bad 1)) (- left 1))))))
(def result (take-all (list/map (fn (k) 0) (list/range senders)) 0 (* senders per)))
(print 'received (head result))
(print 'out-of-order (nth result 1))
(print 'finished (list/map (fn (k) (receive ((list 'fin j) :when (== j k) j))) (list/range senders)))
