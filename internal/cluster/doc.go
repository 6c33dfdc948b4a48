// Package cluster keeps several masters in one cluster: each master
// process is an incarnation with a heartbeat, one elected supervisor
// assigns the clustered services, and fencing tokens refuse the writes of
// an owner that was replaced.
//
// # Incarnations
//
// Each start of a master process joins the cluster as a new incarnation: a
// row in the masters table with the master's name, roles and tags, alive
// as of the database clock. Names are unique among live incarnations. An
// incarnation goes through these states:
//
//	          Drain                Stop
//	alive ────────────► draining ────────► stopped
//	  │                    │
//	  └──────┬─────────────┘
//	         ▼
//	       dead    declared by the supervisor (heartbeat older than the
//	               time-to-live on the database clock, or session ended),
//	               by a join of the same name, or by the master itself
//	               when it fences
//
// An ended incarnation never comes back: a master that finds its
// incarnation dead, or that fenced itself, joins again as a new one.
//
// On PostgreSQL, each incarnation also holds a session-scoped advisory
// lock, keyed by its id, on a connection of its own, taken before its row
// exists. When the process dies its session ends and the lock is free, so
// the supervisor sees the crash at its next round, well under a second,
// instead of waiting for the time-to-live. The same connection listens for
// notifications (new generation, new request, cancellation, service
// moved), which wake the master's loops; they all poll slowly as well, so
// a lost notification only delays.
//
// # The trust window
//
// A master heartbeats every second. The database declares it dead once
// its last heartbeat is older than the time-to-live (TTL), by the
// database's clock. The master itself keeps, by its own monotonic clock,
// the time it sent its last heartbeat that succeeded; the database
// recorded a time no earlier than that. So when TTL minus a margin has
// passed since then without a renewal, the master stops all its clustered
// services (it fences itself) before anyone can have been given them:
//
//	sent ──── renewed ──── ... ─── sent + TTL - margin ─── sent + TTL
//	                              this master stops its     another master
//	                              services here             may own them
//
// A master that was paused (SIGSTOP) cannot stop anything while it is
// paused; when it resumes, its writes may run before its own timer fires.
// Fencing tokens cover that case. So do they when a master's session
// alone is cut while the master lives: the supervisor takes that for a
// crash and moves its services at once, and the master fences itself as
// soon as its session reports the loss.
//
// # Services, leases and fencing tokens
//
// Clustered services (pollers, timed schedulers, the configuration
// watcher, housekeeping) each have one owner and a token, incremented at
// every change of owner. A service is started with its [store.Fence] and
// every durable write it makes checks the fence in the same transaction,
// so the write of an owner that was replaced is refused with
// [store.ErrFenced] whatever the owner believes.
//
// One live master holds the supervisor lease, which has a token too and
// expires on the database clock; it is free at once when its holder's
// session ends. The holder declares dead masters dead, releases what they
// held and places the services of the active generation (see [Place]),
// all in one transaction that also renews the lease and fails if the
// lease was lost. Every master runs a [Supervisor] and so is a candidate.
package cluster
